//! XML in and out: request bodies read into a small tree by quick-xml
//! (namespaces resolved, no document type and so no entity expansion, a
//! size, depth and element cap), and the escaping every name and value
//! gets on the way out.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::error::Error;

/// The WebDAV namespace.
pub const DAV: &str = "DAV:";
/// ownCloud's namespace, for `oc:checksums`.
pub const OC: &str = "http://owncloud.org/ns";
/// Largest XML request body.
pub const MAX_XML: u64 = 64 * 1024;
/// Deepest nesting a request body may have.
const MAX_DEPTH: usize = 32;
/// Most elements a request body may have.
const MAX_ELEMENTS: usize = 4096;

/// An element: its namespace (`""` for none), local name, unprefixed
/// attributes and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Elem(Elem),
    Text(String),
}

impl Elem {
    /// Whether this is `{ns}name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The child elements.
    pub fn elems(&self) -> impl Iterator<Item = &Elem> {
        self.children.iter().filter_map(|n| match n {
            Node::Elem(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child `{DAV:}name`.
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.elems().find(|e| e.is(DAV, name))
    }

    /// The text inside, children's included.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => s.push_str(t),
                Node::Elem(e) => s.push_str(&e.text()),
            }
        }
        s
    }

    /// The children as XML that means the same wherever it is put: each
    /// element declares its own namespace.
    pub fn inner_xml(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            write_node(n, &mut out);
        }
        out
    }
}

fn write_node(n: &Node, out: &mut String) {
    match n {
        Node::Text(t) => out.push_str(&escape(t)),
        Node::Elem(e) => {
            out.push('<');
            out.push_str(&e.name);
            out.push_str(" xmlns=\"");
            out.push_str(&escape(&e.ns));
            out.push('"');
            for (k, v) in &e.attrs {
                out.push_str(&format!(" {k}=\"{}\"", escape(v)));
            }
            if e.children.is_empty() {
                out.push_str("/>");
            } else {
                out.push('>');
                for c in &e.children {
                    write_node(c, out);
                }
                out.push_str("</");
                out.push_str(&e.name);
                out.push('>');
            }
        }
    }
}

/// `s` with `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

fn bad(why: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("the XML body is not acceptable: {why}"))
}

/// Parses a request body: `None` if it is empty (or only white space).
///
/// # Errors
/// `BAD_REQUEST` for XML that is not well-formed or namespace-valid, has
/// a document type (entities are never expanded), or is too deep or too
/// large.
pub fn parse(body: &[u8]) -> Result<Option<Elem>, Error> {
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Elem> = Vec::new();
    let mut root = None;
    let mut count = 0usize;
    loop {
        let (res, event) = reader.read_resolved_event().map_err(bad)?;
        let ns = match &res {
            ResolveResult::Bound(n) => n.as_ref().to_string(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => return Err(bad(format!("unknown prefix {p}"))),
        };
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(bad("too many or too deeply nested elements"));
                }
                if root.is_some() {
                    return Err(bad("content after the root element"));
                }
                let mut attrs = Vec::new();
                for a in s.attributes() {
                    let a = a.map_err(bad)?;
                    let key: &str = a.key.as_ref();
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(bad)?;
                    if let Some(prefix) = key.strip_prefix("xmlns:") {
                        // Namespaces in XML 1.0: a prefix cannot be
                        // bound to the empty name.
                        if value.is_empty() {
                            return Err(bad(format!("prefix {prefix} bound to no namespace")));
                        }
                    } else if key != "xmlns" && !key.contains(':') {
                        attrs.push((key.to_string(), value.into_owned()));
                    }
                }
                let name = s.local_name().as_ref().to_string();
                let elem = Elem {
                    ns,
                    name,
                    attrs,
                    children: Vec::new(),
                };
                if matches!(event, Event::Empty(_)) {
                    close(&mut stack, &mut root, elem);
                } else {
                    stack.push(elem);
                }
            }
            Event::End(_) => {
                let elem = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                close(&mut stack, &mut root, elem);
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                push_text(&mut stack, &t)?;
            }
            Event::CData(c) => {
                let t = c.into_inner().into_owned();
                push_text(&mut stack, &t)?;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(bad)? {
                    Some(c) => c.to_string(),
                    None => match r.into_inner().as_ref() {
                        "amp" => "&".into(),
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "quot" => "\"".into(),
                        "apos" => "'".into(),
                        other => return Err(bad(format!("unknown entity &{other};"))),
                    },
                };
                push_text(&mut stack, &c)?;
            }
            Event::DocType(_) => return Err(bad("a document type is not accepted")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element"));
    }
    root.map(Some).ok_or_else(|| bad("no root element"))
}

fn close(stack: &mut [Elem], root: &mut Option<Elem>, elem: Elem) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Elem(elem)),
        None => *root = Some(elem),
    }
}

fn push_text(stack: &mut [Elem], t: &str) -> Result<(), Error> {
    match stack.last_mut() {
        Some(parent) => {
            if let Some(Node::Text(prev)) = parent.children.last_mut() {
                prev.push_str(t);
            } else {
                parent.children.push(Node::Text(t.to_string()));
            }
            Ok(())
        }
        None if t.trim().is_empty() => Ok(()),
        None => Err(bad("text outside the root element")),
    }
}

/// Unix seconds as RFC 1123 (`getlastmodified`, `Last-Modified`).
pub fn http_date(secs: u64) -> String {
    let (y, mo, d, h, mi, s, wd) = civil(secs);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} GMT",
        DAYS[wd],
        MONTHS[mo as usize - 1]
    )
}

/// Unix seconds as RFC 3339 (`creationdate`).
pub fn rfc3339(secs: u64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// (year, month, day, hour, minute, second, days since a Thursday).
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64, usize) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = (days.rem_euclid(7)) as usize;
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60, wd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_resolve_and_values_keep_their_meaning() {
        let body = br#"<?xml version="1.0"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://z/">
  <D:set><D:prop><Z:a>x &amp; y &#x1F600;<b xmlns="http://b/" k="v">in</b></Z:a>
  <nons xmlns="">v</nons></D:prop></D:set>
</D:propertyupdate>"#;
        let root = parse(body).unwrap().unwrap();
        assert!(root.is(DAV, "propertyupdate"));
        let prop = root.child("set").unwrap().child("prop").unwrap();
        let a: Vec<_> = prop.elems().collect();
        assert_eq!((a[0].ns.as_str(), a[0].name.as_str()), ("http://z/", "a"));
        assert_eq!(
            a[0].inner_xml(),
            "x &amp; y \u{1F600}<b xmlns=\"http://b/\" k=\"v\">in</b>"
        );
        assert_eq!((a[1].ns.as_str(), a[1].name.as_str()), ("", "nons"));
    }

    #[test]
    fn bombs_and_bad_xml_are_refused() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><x>&b;</x>"#;
        assert!(parse(bomb).is_err());
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"<x:a/>").is_err(), "unknown prefix");
        assert!(parse(br#"<D:a xmlns:D="DAV:"><b:c xmlns:b=""/></D:a>"#).is_err());
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(parse(deep.as_bytes()).is_err());
        assert_eq!(parse(b"  \n").unwrap(), None);
    }

    #[test]
    fn dates_are_rfc_1123_and_3339() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_796_223_600), "Wed, 02 Dec 2026 15:00:00 GMT");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
