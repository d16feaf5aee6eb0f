//! Domain newtypes. Each is created only through `parse` (or a generator), so a
//! value of the type is always valid.

pub mod audience;
pub mod client;
pub mod client_keys;
pub mod nin;
pub mod org_number;
pub mod redirect_uri;
pub mod scope;

pub use audience::{ApiAudience, ApiAudiences};
pub use client::{Client, ClientId, ClientName, ClientSecret, Purpose, SecretHash};
pub use client_keys::{
    ClientKeySet, ClientKeys, FetchUri, FetchUriError, KeySetError, RequestObjectPolicy,
    SignatureAlg,
};
pub use nin::{Nin, NinError, NinKind, NinPolicy};
pub use org_number::OrgNumber;
pub use redirect_uri::RedirectUri;
pub use scope::{Scope, ScopeSet};
