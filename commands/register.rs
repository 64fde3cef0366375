//! `register`: create an account with an empty folder.
//!
//! # Format
//! Request: `{"cmd":"register","user":U,"password":P}`.
//! Reply: `{"ok":true}`. Does not log in or out.
//! Errors, first applicable first: `BAD_REQUEST`, `INVALID_NAME`,
//! `WEAK_PASSWORD`, `REGISTRATION_CLOSED` (`serve --registration closed`),
//! `RATE_LIMITED` (the address registered `--register-limit` accounts
//! this hour; only accounts created count), `USER_EXISTS`, `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::{canonical_user, check_password};
use crate::protocol::Password;
use crate::protocol::{Header, Reply};

/// Request fields (also `login`'s).
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub user: String,
    pub password: Password,
}

/// The `register` command.
pub struct Register;

impl Command for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn requires_auth(&self) -> bool {
        false
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        if !ctx.shared.config.registration_open {
            // Fields before state (PROTOCOL.md, "Session").
            canonical_user(&args.user)?;
            check_password(args.password.expose())?;
            return Err(Error::RegistrationClosed);
        }
        let storage = &ctx.shared.disk;
        ctx.shared
            .users
            .register(&args.user, &args.password, ctx.peer, |key| {
                storage.create_home(key).map_err(crate::disk::io_error)
            })?;
        Ok(Reply::new())
    }
}

#[cfg(test)]
mod tests {
    use crate::commands::testing::{shared, shared_with, Session};
    use crate::error::ErrorCode;

    #[test]
    fn registers_once_per_name_and_checks_fields_first() {
        let (_dir, shared) = shared();
        let mut s = Session::anonymous(&shared);
        s.ok(r#"{"cmd":"register","user":"ann","password":"long enough"}"#);
        s.fails(
            r#"{"cmd":"register","user":"ANN","password":"long enough"}"#,
            ErrorCode::UserExists,
        );
        s.fails(
            r#"{"cmd":"register","user":".ann","password":"long enough"}"#,
            ErrorCode::InvalidName,
        );
        s.fails(
            r#"{"cmd":"register","user":"bob","password":"short"}"#,
            ErrorCode::WeakPassword,
        );
        s.fails(r#"{"cmd":"register","user":"bob"}"#, ErrorCode::BadRequest);
        assert!(s.user.is_none(), "register does not log in");
    }

    #[test]
    fn a_closed_server_refuses_after_checking_the_fields() {
        let (_dir, shared) = shared_with(|c| c.registration_open = false);
        let mut s = Session::anonymous(&shared);
        s.fails(
            r#"{"cmd":"register","user":"ann","password":"long enough"}"#,
            ErrorCode::RegistrationClosed,
        );
        s.fails(
            r#"{"cmd":"register","user":"ann","password":"short"}"#,
            ErrorCode::WeakPassword,
        );
    }
}
