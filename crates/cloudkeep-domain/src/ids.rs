//! Typed identifiers, so an organisation id is never passed as a user id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random identifier.
            pub fn new() -> Self {
                $name(Uuid::new_v4())
            }

            pub fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

id_type!(
    /// An organisation: a customer of the installation.
    OrgId
);
id_type!(
    /// A platform user.
    UserId
);
id_type!(
    /// An API token (not its secret value).
    TokenId
);
id_type!(
    /// A connection to one Azure tenant.
    ConnectionId
);
id_type!(
    /// cloudkeep's record of an Azure subscription under a connection.
    SubscriptionId
);
id_type!(
    /// An audit event.
    EventId
);
