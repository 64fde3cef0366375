//! Multipart uploads, driven by the caller: it numbers the parts and keeps
//! their ETags itself (never ListParts), then completes or aborts.

use base64::Engine as _;
use md5::{Digest, Md5};
use rusty_s3::actions::CreateMultipartUpload;
use rusty_s3::S3Action;

use super::request::{error_code, read_answer, xml_text};
use super::retry::Attempt;
use super::{S3, SIGNED_FOR};
use crate::error::Error;

impl S3 {
    /// Begins a multipart upload of blob `id`: its upload id.
    ///
    /// # Errors
    /// A store fault or refusal, or an answer without an upload id.
    pub fn create_multipart(&self, id: &str) -> Result<String, Error> {
        let key = self.key(id)?;
        self.call(
            "create multipart",
            &key,
            None,
            || {
                let url = self
                    .bucket
                    .create_multipart_upload(Some(&self.credentials), &key)
                    .sign(SIGNED_FOR);
                self.agent.request_url("POST", &url)
            },
            |status, answer| {
                if !(200..300).contains(&status) {
                    return Attempt::Fail(self.refused("create multipart", &key, status, answer));
                }
                match read_answer(answer) {
                    Err(e) => Attempt::Again(self.fault(
                        "create multipart",
                        &key,
                        format!("reading the answer: {e}"),
                    )),
                    Ok(xml) => match CreateMultipartUpload::parse_response(&xml) {
                        Ok(r) => Attempt::Done(r.upload_id().to_string()),
                        Err(e) => Attempt::Fail(self.fault(
                            "create multipart",
                            &key,
                            format!("unreadable answer: {e}"),
                        )),
                    },
                }
            },
        )
    }

    /// Sends part `part_no` (1 to 10000) of an upload, with its MD5 for the
    /// store to check: the part's ETag, for [`S3::complete_multipart`].
    /// Every part but the last must be at least 5 MiB.
    ///
    /// # Errors
    /// A store fault or refusal (`NoSuchUpload` for an aborted upload).
    pub fn upload_part(
        &self,
        id: &str,
        upload_id: &str,
        part_no: u16,
        bytes: &[u8],
    ) -> Result<String, Error> {
        let key = self.key(id)?;
        if !(1..=10_000).contains(&part_no) {
            return Err(Error::Internal(format!(
                "S3 upload part {key}: part number {part_no} is not 1 to 10000"
            )));
        }
        let md5_b64 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes));
        self.call(
            "upload part",
            &key,
            Some(bytes),
            || {
                let mut action =
                    self.bucket
                        .upload_part(Some(&self.credentials), &key, part_no, upload_id);
                action.headers_mut().insert("content-md5", md5_b64.as_str());
                let url = action.sign(SIGNED_FOR);
                self.agent
                    .request_url("PUT", &url)
                    .set("Content-MD5", &md5_b64)
            },
            |status, answer| {
                if !(200..300).contains(&status) {
                    return Attempt::Fail(self.refused("upload part", &key, status, answer));
                }
                match answer.header("etag") {
                    Some(etag) => Attempt::Done(etag.to_string()),
                    None => Attempt::Fail(self.fault(
                        "upload part",
                        &key,
                        "no ETag in the answer".into(),
                    )),
                }
            },
        )
    }

    /// Joins the parts (number, ETag; any order, no repeats) into blob `id`.
    ///
    /// # Errors
    /// A store fault or refusal, also one the store reports in a 200 answer
    /// (`InvalidPart`, `EntityTooSmall`...).
    pub fn complete_multipart(
        &self,
        id: &str,
        upload_id: &str,
        parts: &[(u16, String)],
    ) -> Result<(), Error> {
        let key = self.key(id)?;
        let op = "complete multipart";
        let mut sorted: Vec<&(u16, String)> = parts.iter().collect();
        sorted.sort_by_key(|(n, _)| *n);
        if sorted.is_empty() || sorted.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Error::Internal(format!(
                "S3 {op} {key}: no parts, or a part twice"
            )));
        }
        let mut body = String::from("<CompleteMultipartUpload>");
        for (n, etag) in sorted {
            body.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                xml_text(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        self.call(
            op,
            &key,
            Some(body.as_bytes()),
            || {
                let url = self
                    .bucket
                    .complete_multipart_upload(
                        Some(&self.credentials),
                        &key,
                        upload_id,
                        std::iter::empty(),
                    )
                    .sign(SIGNED_FOR);
                self.agent
                    .request_url("POST", &url)
                    .set("Content-Type", "application/xml")
            },
            |status, answer| {
                if !(200..300).contains(&status) {
                    return Attempt::Fail(self.refused(op, &key, status, answer));
                }
                // S3 may answer 200 and still fail: the error is in the body.
                match read_answer(answer) {
                    Err(e) => {
                        Attempt::Again(self.fault(op, &key, format!("reading the answer: {e}")))
                    }
                    Ok(xml) => match error_code(&xml) {
                        None => Attempt::Done(()),
                        Some((code, message)) => {
                            let e = self.fault(op, &key, format!("{status} {code}: {message}"));
                            if matches!(
                                code.as_str(),
                                "InternalError" | "SlowDown" | "ServiceUnavailable"
                            ) {
                                Attempt::Again(e)
                            } else {
                                Attempt::Fail(e)
                            }
                        }
                    },
                }
            },
        )
    }

    /// Drops an unfinished upload and its parts (an unknown one is fine).
    ///
    /// # Errors
    /// A store fault or refusal.
    pub fn abort_multipart(&self, id: &str, upload_id: &str) -> Result<(), Error> {
        let key = self.key(id)?;
        self.call(
            "abort multipart",
            &key,
            None,
            || {
                let url = self
                    .bucket
                    .abort_multipart_upload(Some(&self.credentials), &key, upload_id)
                    .sign(SIGNED_FOR);
                self.agent.request_url("DELETE", &url)
            },
            |status, answer| match status {
                200..=299 | 404 => Attempt::Done(()),
                _ => Attempt::Fail(self.refused("abort multipart", &key, status, answer)),
            },
        )
    }
}
