//! Domain types that say what a value is, instead of bare integers and strings.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$inner> for $name {
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }
    };
}

macro_rules! str_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

int_id!(
    /// A shard number of an index, `0 <= shard < shard_count`.
    ShardId(u32)
);
int_id!(
    /// A replica group number.
    GroupId(u32)
);
int_id!(
    /// A committed topology version; strictly increasing.
    TopologyVersion(u64)
);
int_id!(
    /// The term of a control-plane leader; grows whenever leadership changes hands.
    FencingToken(u64)
);
int_id!(
    /// A fleet-wide client task uid, below 2^31.
    TaskUid(u32)
);
str_id!(
    /// A Meilisearch node's stable id, chosen by the operator.
    NodeId
);
str_id!(
    /// A Meilisearch index uid.
    IndexUid
);

impl IndexUid {
    /// Bytes an index uid may have (Meilisearch 1.50).
    pub const MAX_BYTES: usize = 512;

    /// Checks `uid` as Meilisearch does: 1 to 512 bytes of `[A-Za-z0-9_-]`; the error is
    /// Meilisearch's sentence.
    pub fn check(uid: &str) -> Result<(), String> {
        let valid = !uid.is_empty()
            && uid.len() <= Self::MAX_BYTES
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if valid {
            Ok(())
        } else {
            Err(format!(
                "`{uid}` is not a valid index uid. Index uid can be an integer or a string containing only alphanumeric characters, hyphens (-) and underscores (_), and can not be more than {} bytes.",
                Self::MAX_BYTES
            ))
        }
    }
}

impl TopologyVersion {
    /// The version that follows this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl TaskUid {
    /// Task uids stay below 2^31 so every SDK's integer type holds them.
    pub const LIMIT: u32 = 1 << 31;
}

impl crate::pb::NodeState {
    /// Lower-case name for logs and the CLI, e.g. `active`.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::Joining => "joining",
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Failed => "failed",
            Self::Removed => "removed",
        }
    }

    /// Lower-case name of a node state carried as its wire value.
    pub fn name_of(value: i32) -> &'static str {
        Self::try_from(value).map_or("unknown", Self::short_name)
    }
}

impl crate::pb::GroupState {
    /// Lower-case name for logs and the CLI, e.g. `active`.
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Unspecified => "unknown",
            Self::Active => "active",
            Self::Syncing => "syncing",
            Self::Draining => "draining",
        }
    }

    /// Lower-case name of a group state carried as its wire value.
    pub fn name_of(value: i32) -> &'static str {
        Self::try_from(value).map_or("unknown", Self::short_name)
    }
}
