//! HTTP peer (in progress).
