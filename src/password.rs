//! Password hashes: argon2id PHC strings, computed in memory each hashing
//! thread keeps.
//!
//! An argon2id hash with the default parameters works through 19 MiB.
//! Allocated afresh for each hash, that memory is freed to the allocator
//! but stays resident, spread over its per-thread arenas, and a busy server
//! ended up holding several times the working set. Here each thread that
//! hashes keeps one block buffer for good and reuses it, so the memory
//! hashing costs is exactly (threads that hash) × (the largest parameters
//! seen). `users::UserStore` hashes on a pool of one thread per two
//! cores.

use std::cell::RefCell;
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::Error;
use crate::protocol::Password;

thread_local! {
    /// This thread's argon2 working memory.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Hashes a password with argon2id (default parameters) and a random salt;
/// returns the PHC string.
///
/// # Errors
/// Only if the hasher rejects its inputs, which valid passwords never cause.
pub fn hash(password: &Password) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = Argon2::default();
    let len = Params::DEFAULT_OUTPUT_LEN;
    let output = compute(&argon2, password, salt.as_salt(), len)
        .map_err(|e| Error::Internal(format!("hashing: {e}")))?;
    let phc = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon2.params())
            .map_err(|e| Error::Internal(format!("hashing: {e}")))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, with the parameters
/// that string names. A string that does not parse matches nothing.
pub fn verify(password: &Password, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let argon2 = match (
        Algorithm::try_from(parsed.algorithm),
        parsed
            .version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&parsed),
    ) {
        (Ok(alg), Ok(ver), Ok(params)) => Argon2::new(alg, ver, params),
        _ => return false,
    };
    // `Output`'s equality is constant-time.
    compute(&argon2, password, salt, expected.len()).is_ok_and(|out| out == expected)
}

/// A valid hash of a password nobody has, so that logins of unknown users
/// cost as much as any other.
pub fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // Hashing a fixed string with a fresh salt cannot fail.
        hash(&Password::new("netdisk-timing-equaliser")).expect("argon2 hashes")
    })
}

/// The raw argon2 output, computed in this thread's block buffer.
fn compute(
    argon2: &Argon2<'_>,
    password: &Password,
    salt: Salt<'_>,
    len: usize,
) -> argon2::password_hash::Result<Output> {
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let need = argon2.params().block_count();
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < need {
            blocks.resize(need, Block::default());
        }
        Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(
                    password.expose().as_bytes(),
                    salt,
                    out,
                    &mut blocks[..need],
                )
                .map_err(Into::into)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let pw = Password::new("correct horse");
        let a = hash(&pw).unwrap();
        let b = hash(&pw).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify(&pw, &a) && verify(&pw, &b));
        assert!(!verify(&Password::new("correct horsE"), &a));
        assert!(!verify(&pw, "not a phc string"));
        assert!(!verify(&pw, ""));
    }

    #[test]
    fn agrees_with_the_argon2_crate_both_ways() {
        let pw = Password::new("interoperable");
        let ours = hash(&pw).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(pw.expose().as_bytes(), &parsed)
            .is_ok());
        // A hash with other parameters, as an admin's tool might write it.
        let params = Params::new(8192, 3, 1, Some(24)).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(pw.expose().as_bytes(), &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify(&pw, &theirs));
        assert!(!verify(&Password::new("other"), &theirs));
    }
}
