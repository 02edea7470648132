//! Auth detection and the OAuth 2.1 client for connectors.
//!
//! A connector's server may be open, want a static token, HTTP Basic, or OAuth. This crate
//! finds out which ([`AuthClient::detect`], with a step-by-step [`Evidence`] list a person can
//! read), and runs the OAuth side for a web platform:
//!
//! 1. [`AuthClient::discover`]: protected-resource metadata (RFC 9728), then the
//!    authorization server's metadata (RFC 8414 / OpenID Connect Discovery) with its issuer
//!    check, PKCE S256 support and endpoint rules; the result is an [`AuthServer`] to store.
//! 2. [`AuthClient::register`]: a pre-registered client, a client ID metadata document (the
//!    platform serves [`AuthClient::metadata_document`] itself), or dynamic registration
//!    (RFC 7591); the result is a [`ClientRegistration`] bound to the issuer.
//! 3. [`AuthClient::begin`]: the authorization URL and a [`PendingAuthorization`] to keep
//!    until the callback; [`AuthClient::finish`] checks the callback (`state`, RFC 9207 `iss`)
//!    and exchanges the code for a [`TokenSet`].
//! 4. [`AuthClient::refresh`] and [`AuthClient::revoke`]; [`OAuthError::is_retryable`] and
//!    [`OAuthError::is_grant_lost`] tell a passing failure from a lost grant.
//!
//! Every request goes through `switchboard-net`'s [`switchboard_net::SafeClient`], so a
//! metadata document cannot point Switchboard at its own network; endpoints must be https
//! unless the operator allows plain http for the host. The `resource` parameter (RFC 8707) is
//! on every authorization, token and refresh request.
//!
//! **API boundary:** knows HTTP as a client and OAuth; knows nothing of MCP sessions, stores
//! or HTTP serving. What must survive between calls is returned as serializable values for
//! the caller to store (sealed, where it holds a [`Secret`]).

#![deny(missing_docs)]

pub mod challenge;
mod client;
mod discovery;
mod error;
mod flow;
mod metadata;
mod registration;
pub mod scope;
mod secret;
mod token;

pub use challenge::Challenge;
pub use client::{ApplicationType, AuthClient, ClientConfig};
pub use discovery::{
    AuthServer, DecisiveHeader, Detection, DiscoverySource, Evidence, Outcome, RegistrationOptions,
};
pub use error::{OAuthError, Result};
pub use flow::{
    AuthorizationRequest, CallbackParams, PENDING_LIFETIME_SECONDS, PendingAuthorization,
    pkce_challenge, state_digest,
};
pub use metadata::{
    AuthServerMetadata, MetadataKind, ProtectedResourceMetadata, authorization_server_urls,
    canonical_resource, issuer_matches, protected_resource_urls, resource_covers,
};
pub use registration::{ClientRegistration, PreRegisteredClient, TokenEndpointAuth};
pub use secret::Secret;
pub use token::{TokenKind, TokenSet};
