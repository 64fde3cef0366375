//! `PROPPATCH`: dead properties set and removed in document order, all or
//! nothing; live ones are protected (`403`, the rest `424`). They are
//! stored with the resource ([`crate::storage::Prop`]), bounded in count
//! and size (`507` past that).

use super::props::{element, entry_of, is_live, HEAD};
use super::xml::{escape, Elem, DAV};
use super::{href, refuse, xml_response, Answer, Dav, Result};
use crate::error::Error;
use crate::server::conn::{Conn, Stream};
use crate::storage::Prop;

pub(super) fn proppatch<S: Stream>(d: &mut Dav<'_>, conn: &mut Conn<S>) -> Result<Answer> {
    let Some(root) = d.xml_body(conn)? else {
        return Err(Error::bad_request("PROPPATCH needs a DAV:propertyupdate body").into());
    };
    if !root.is(DAV, "propertyupdate") {
        return Err(Error::bad_request("a PROPPATCH body is a DAV:propertyupdate").into());
    }
    let path = d.path.clone();
    let Some(me) = entry_of(d, &path)? else {
        return Err(Error::NotFound.into());
    };
    d.unlocked(&path, false)?;
    let mut props = d.shared.disk.props(d.key(), &path)?;
    // (ns, name, protected) in the order asked.
    let mut asked: Vec<(String, String, bool)> = Vec::new();
    for op in root.elems() {
        let set = op.is(DAV, "set");
        if !set && !op.is(DAV, "remove") {
            continue;
        }
        for p in op.child("prop").into_iter().flat_map(Elem::elems) {
            let protected = is_live(&p.ns, &p.name);
            asked.push((p.ns.clone(), p.name.clone(), protected));
            if protected {
                continue;
            }
            props.retain(|q| !(q.ns == p.ns && q.name == p.name));
            if set {
                props.push(Prop {
                    ns: p.ns.clone(),
                    name: p.name.clone(),
                    value: p.inner_xml(),
                });
            }
        }
    }
    let refused = asked.iter().any(|a| a.2);
    let stored = if refused {
        Ok(())
    } else {
        d.shared.disk.set_props(d.key(), &path, &props)
    };
    let status = |protected: bool| match (&stored, refused) {
        (_, true) if protected => "403 Forbidden",
        (_, true) => "424 Failed Dependency",
        (Err(Error::QuotaExceeded { .. }), _) => "507 Insufficient Storage",
        (Err(_), _) => "500 Internal Server Error",
        (Ok(()), _) => "200 OK",
    };
    let mut out = format!(
        "{HEAD}<D:response><D:href>{}</D:href>",
        escape(&href(&me.path, me.folder))
    );
    for (ns, name, protected) in &asked {
        out.push_str(&format!(
            "<D:propstat><D:prop>{}</D:prop><D:status>HTTP/1.1 {}</D:status></D:propstat>",
            element(ns, name, ""),
            status(*protected)
        ));
    }
    out.push_str("</D:response></D:multistatus>\n");
    if let Err(e) = &stored {
        if !matches!(e, Error::QuotaExceeded { .. }) {
            return Err(refuse(500, &e.public_message()));
        }
    }
    Ok(Answer::Send(xml_response(207, out)))
}
