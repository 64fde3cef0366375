//! A streamed GET that picks up where it was cut off.

use std::io::{self, Read};

use rusty_s3::S3Action;

use super::retry::Attempt;
use super::{Body, S3, SIGNED_FOR};
use crate::error::Error;

impl S3 {
    /// GET `key` from `offset` on (of the object with ETag `if_match`, if
    /// given): its body and ETag.
    pub(super) fn get_from(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(Body, Option<String>), Error> {
        let range = format!("bytes={offset}-");
        self.call(
            "get",
            key,
            None,
            || {
                let url = self
                    .bucket
                    .get_object(Some(&self.credentials), key)
                    .sign(SIGNED_FOR);
                let mut request = self.agent.request_url("GET", &url);
                if offset > 0 {
                    request = request.set("Range", &range);
                }
                if let Some(etag) = if_match {
                    request = request.set("If-Match", etag);
                }
                request
            },
            |status, answer| {
                let etag = answer.header("etag").map(str::to_owned);
                match status {
                    206 => Attempt::Done((answer.into_reader(), etag)),
                    // A store that ignores Range sends it all: skip to the offset.
                    200..=299 => {
                        let mut body = answer.into_reader();
                        match io::copy(&mut (&mut body).take(offset), &mut io::sink()) {
                            Ok(_) => Attempt::Done((body, etag)),
                            Err(e) => {
                                Attempt::Again(self.fault("get", key, format!("reading: {e}")))
                            }
                        }
                    }
                    416 => Attempt::Done((Box::new(io::empty()) as Body, etag)),
                    _ => Attempt::Fail(self.refused("get", key, status, answer)),
                }
            },
        )
    }
}

/// A body that asks again from its offset when cut short.
pub(super) struct Resuming {
    s3: S3,
    key: String,
    offset: u64,
    etag: Option<String>,
    body: Body,
    resumes_left: u32,
}

impl Resuming {
    pub(super) fn new(s3: S3, key: String, offset: u64, etag: Option<String>, body: Body) -> Self {
        let resumes_left = s3.backoff.attempts.saturating_sub(1);
        Resuming {
            s3,
            key,
            offset,
            etag,
            body,
            resumes_left,
        }
    }
}

impl Read for Resuming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.body.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A store that stalls would only stall again.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Err(e)
                }
                Err(e) if self.resumes_left > 0 => {
                    self.resumes_left -= 1;
                    match self
                        .s3
                        .get_from(&self.key, self.offset, self.etag.as_deref())
                    {
                        Ok((body, _)) => self.body = body,
                        Err(fault) => {
                            return Err(io::Error::other(format!("{e}; asked again: {fault}")))
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
