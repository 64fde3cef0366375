//! `login`: act as a user from now on.
//!
//! # Format
//! Request: `{"cmd":"login","user":U,"password":P}`.
//! Reply: `{"ok":true,"user":NAME}`, NAME as it was registered.
//! Errors: `BAD_REQUEST`, `RATE_LIMITED`, `AUTH_FAILED` (one code for every
//! kind of wrong credentials). A failed login leaves the session as it was.

use serde::{Deserialize, Serialize};

use super::register::Args;
use super::{fields, parse, Command, Ctx};
use crate::error::Error;
use crate::protocol::{Header, Reply};

/// Reply fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub user: String,
}

/// The `login` command.
pub struct Login;

impl Command for Login {
    fn name(&self) -> &'static str {
        "login"
    }

    fn requires_auth(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        // The account tried goes in the log (escaped there), so that an
        // admin sees whom a run of failures was aimed at; a name that is no
        // account is not written (it may be a password typed in the wrong
        // field).
        let known = crate::names::canonical_user(&args.user)
            .ok()
            .and_then(|k| ctx.shared.users.get(&k));
        ctx.log_name = Some(known.map_or_else(|| "(no such user)".to_string(), |u| u.name.clone()));
        let user = ctx
            .shared
            .users
            .login(&args.user, &args.password, ctx.peer)?;
        let answer = Answer {
            user: user.name.clone(),
        };
        *ctx.user = Some(user);
        Ok(fields(answer))
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared, Session, PASSWORD};
    use crate::error::ErrorCode;

    #[test]
    fn logs_in_by_any_spelling_and_a_failure_changes_nothing() {
        let (_dir, shared) = shared();
        let mut s = Session::user(&shared, "Ann");
        let me = s.user.clone().unwrap();
        let wrong = r#"{"cmd":"login","user":"ann","password":"not the password"}"#;
        s.fails(wrong, ErrorCode::AuthFailed);
        assert_eq!(
            s.user.as_ref().unwrap().key,
            me.key,
            "still logged in as before"
        );
        s.fails(
            r#"{"cmd":"login","user":"nobody","password":"whatever pw"}"#,
            ErrorCode::AuthFailed,
        );
        s.fails(r#"{"cmd":"login","user":"ann"}"#, ErrorCode::BadRequest);
        let r = s.ok(&format!(
            r#"{{"cmd":"login","user":"ANN","password":"{PASSWORD}"}}"#
        ));
        assert_eq!(r["user"], "Ann", "the name as registered");
    }
}
