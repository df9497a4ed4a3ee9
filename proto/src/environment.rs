//! The environment a server runs in, as Meilisearch's `--env`: in production the master key
//! must be at least 16 bytes; in development a shorter one is allowed, with a warning (the
//! official SDKs' own test suites use `masterKey`).

use std::fmt;
use std::str::FromStr;

/// Bytes a master key needs in production, as Meilisearch requires of its nodes.
pub const MIN_PRODUCTION_MASTER_KEY_BYTES: usize = 16;

/// `--env` / `MIROIR_ENV`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Environment {
    /// Short master keys allowed, with a warning (Meilisearch's default too).
    #[default]
    Development,
    /// A master key of at least 16 bytes.
    Production,
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "development" => Ok(Self::Development),
            "production" => Ok(Self::Production),
            other => Err(format!(
                "`{other}` is not an environment: expected `development` or `production`"
            )),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Development => "development",
            Self::Production => "production",
        })
    }
}

impl Environment {
    /// Checks `master_key` as Meilisearch checks its own: an error in production when it is
    /// shorter than 16 bytes; in development, a warning to log then.
    pub fn check_master_key(self, master_key: &str) -> Result<Option<String>, String> {
        let bytes = master_key.len();
        if bytes >= MIN_PRODUCTION_MASTER_KEY_BYTES {
            return Ok(None);
        }
        match self {
            Self::Production => Err(format!(
                "in production (--env production) the master key must be at least {MIN_PRODUCTION_MASTER_KEY_BYTES} bytes, as Meilisearch requires of its nodes; this one is {bytes}"
            )),
            Self::Development => Ok(Some(format!(
                "the master key is {bytes} bytes: fine in development, but --env production (MIROIR_ENV=production) needs at least {MIN_PRODUCTION_MASTER_KEY_BYTES}, as Meilisearch does"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_master_keys_are_for_development_only() {
        assert_eq!("production".parse(), Ok(Environment::Production));
        assert_eq!(Environment::default(), Environment::Development);
        assert!("staging".parse::<Environment>().is_err());
        let long = "0123456789abcdef";
        for env in [Environment::Development, Environment::Production] {
            assert_eq!(env.check_master_key(long), Ok(None));
        }
        assert!(
            Environment::Development
                .check_master_key("masterKey")
                .is_ok_and(|w| w.is_some_and(|w| w.contains("9 bytes")))
        );
        assert!(
            Environment::Production
                .check_master_key("masterKey")
                .is_err_and(|e| e.contains("this one is 9"))
        );
    }
}
