//! `quit`: end the session.
//!
//! # Format
//! Request: `{"cmd":"quit"}`.
//! Reply: `{"ok":true}`, then the server closes the connection.

use super::{Command, Ctx};
use crate::error::Error;
use crate::protocol::{Header, Reply};

/// The `quit` command.
pub struct Quit;

impl Command for Quit {
    fn name(&self) -> &'static str {
        "quit"
    }

    fn requires_auth(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut Ctx<'_>, _header: &Header) -> Result<Reply, Error> {
        ctx.close = true;
        Ok(Reply::new())
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared, Session};

    #[test]
    fn quit_needs_no_login_and_answers_empty() {
        let (_dir, shared) = shared();
        let mut s = Session::anonymous(&shared);
        assert!(s.ok(r#"{"cmd":"quit"}"#).is_empty());
        assert!(s.closed, "the session closes after the reply");
    }
}
