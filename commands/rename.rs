//! `rename`: give a file a new name; its MD5 moves with it.
//!
//! # Format
//! Request: `{"cmd":"rename","from":A,"to":B}`.
//! Reply: `{"ok":true}`.
//! Errors: `NOT_LOGGED_IN`, `BAD_REQUEST`, `INVALID_NAME`, `NOT_FOUND`
//! (`from`), `EXISTS` (`to`), `INTERNAL`.

use serde::{Deserialize, Serialize};

use super::{parse, Command, Ctx};
use crate::error::Error;
use crate::names::check_file_name;
use crate::protocol::{Header, Reply};

/// Request fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Args {
    pub from: String,
    pub to: String,
}

/// The `rename` command.
pub struct Rename;

impl Command for Rename {
    fn name(&self) -> &'static str {
        "rename"
    }

    fn run(&self, ctx: &mut Ctx<'_>, header: &Header) -> Result<Reply, Error> {
        let args: Args = parse(header)?;
        ctx.log_name = Some(format!("{} -> {}", args.from, args.to));
        check_file_name(&args.from)?;
        check_file_name(&args.to)?;
        let user = ctx.user()?;
        ctx.shared.storage.rename(&user.key, &args.from, &args.to)?;
        Ok(Reply::new())
    }
}
