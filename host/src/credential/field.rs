//! Vault field names of connection and OAuth-app secrets: the one list both
//! the writers (connection create, OAuth flow) and the readers (credential
//! sources) use, so a secret and its reader can never disagree on a name.

/// A basic-auth password (or API token used as one).
pub const PASSWORD: &str = "password";
/// An API key sent in the connection's API-key header.
pub const API_KEY: &str = "api-key";
/// A bearer token (personal access token).
pub const TOKEN: &str = "token";
/// The current OAuth2 access token.
pub const ACCESS_TOKEN: &str = "access-token";
/// The current OAuth2 refresh token.
pub const REFRESH_TOKEN: &str = "refresh-token";
/// Unix seconds when the access token expires; absent when the provider gave
/// no `expires_in`. Not secret, but sealed next to the token so both are
/// written in one transaction and can never disagree.
pub const EXPIRES_AT: &str = "access-token-expires-at";
/// Unix milliseconds from when the access token is due for a refresh: its
/// expiry less the refresh margin, or less half its lifetime when it lives
/// shorter than twice the margin (so a just-issued token is never due).
/// Sealed in the same transaction as the token.
pub const REFRESH_AT: &str = "access-token-refresh-at";
/// The token endpoint (URL) that issued the stored OAuth tokens: a refresh
/// token is sent only there, so an endpoint changed since (an override, a
/// setting, a new manifest) needs a new authorisation. Not secret; sealed in
/// the same transaction as the tokens.
pub const TOKEN_ENDPOINT: &str = "token-endpoint";
/// An OAuth app's client secret (the connection's own or the plugin's
/// organisation-level app).
pub const CLIENT_SECRET: &str = "client-secret";
