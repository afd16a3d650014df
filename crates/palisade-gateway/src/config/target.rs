//! Where an upstream is: [`UpstreamTarget`], and [`parse_target`], which
//! reads an upstream's (or a shard's) `url`.

/// Where an upstream is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// `http://host:port[/base]`: a base URI (no TLS in this build).
    Url(http::Uri),
    /// `demo://<backend>`: the in-process demo backend, resolved to its
    /// address once it is listening.
    Demo(String),
    /// No `url`: the upstream is sharded, each shard at its own
    /// (`[upstreams.<name>.shards]`).
    Shards,
}

/// Where `url` points, as `[upstreams.<name>] url` accepts it:
/// `demo://<backend>` for a demo backend `is_backend` knows, or
/// `http://host:port[/base]` (no TLS, no query). The error says why not.
///
/// # Errors
///
/// The reason `url` is refused.
pub fn parse_target(
    url: &str,
    is_backend: impl Fn(&str) -> bool,
) -> Result<UpstreamTarget, String> {
    if let Some(backend) = url.strip_prefix("demo://") {
        return if is_backend(backend) {
            Ok(UpstreamTarget::Demo(backend.to_owned()))
        } else {
            Err(format!("`{url}` names no demo backend"))
        };
    }
    match url.parse::<http::Uri>() {
        Ok(uri)
            if uri.scheme_str() == Some("http")
                && uri.authority().is_some()
                && uri.query().is_none() =>
        {
            Ok(UpstreamTarget::Url(uri))
        }
        Ok(uri) if uri.scheme_str() == Some("https") => Err(format!(
            "`{uri}`: https upstreams are not supported by this build (no TLS); use http://"
        )),
        _ => Err(format!(
            "`{url}` is not an upstream URL like http://127.0.0.1:9000 or demo://user-0"
        )),
    }
}
