//! nginx-style upstreams as Tower layers and services.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod http_peer;

/// Alias for a type-erased error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use crate::http_peer::{HttpClient, HttpClientBuilder, HttpPeer};
