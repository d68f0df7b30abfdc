//! The address clients use to reach the API, for absolute URLs (TileJSON):
//! the request's `Host`, or `X-Forwarded-Host` and `X-Forwarded-Proto` when the
//! request comes from a proxy the API is told to trust (`--trusted-proxies`).
//! From any other client those headers are ignored, so nobody can make the API
//! hand out tile URLs of their choosing.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The scheme and host a request was made to, as `http://host:port`.
pub fn public_base(parts: &Parts, trusted: &[IpNet]) -> String {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            // A proxy chain lists the first hop first.
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let from_proxy = peer.is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)));
    let host = from_proxy
        .then(|| header("x-forwarded-host"))
        .flatten()
        .or_else(|| header("host"))
        .filter(|h| is_host(h))
        .unwrap_or("localhost");
    let scheme = match from_proxy.then(|| header("x-forwarded-proto")).flatten() {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// A host name or address with an optional port: nothing that could change a
/// URL's path or user part.
fn is_host(h: &str) -> bool {
    h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// Reads `--trusted-proxies`: addresses or networks, `10.0.0.0/8,127.0.0.1`.
pub fn parse_trusted(list: &str) -> Result<Vec<IpNet>, NotANetwork> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| NotANetwork(s.to_string()))
        })
        .collect()
}

/// An entry of `--trusted-proxies` that is neither an address nor a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or network (like 10.0.0.0/8)")]
pub struct NotANetwork(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri("/v1/layers/x/tilejson");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = parse_trusted("10.0.0.0/8, 127.0.0.1").unwrap();
        let headers = [
            ("host", "origin:8080"),
            ("x-forwarded-host", "tiles.example.com"),
            ("x-forwarded-proto", "https"),
        ];
        assert_eq!(
            public_base(&parts("10.1.2.3:5000", &headers), &trusted),
            "https://tiles.example.com"
        );
        assert_eq!(
            public_base(&parts("127.0.0.1:5000", &headers), &trusted),
            "https://tiles.example.com"
        );
        assert_eq!(
            public_base(&parts("192.0.2.7:5000", &headers), &trusted),
            "http://origin:8080"
        );
        assert_eq!(
            public_base(&parts("10.1.2.3:5000", &headers), &[]),
            "http://origin:8080"
        );
    }

    #[test]
    fn a_host_that_is_not_a_host_is_not_used() {
        let base = public_base(&parts("10.0.0.1:1", &[("host", "evil.com/x?")]), &[]);
        assert_eq!(base, "http://localhost");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        assert_eq!(parse_trusted("").unwrap(), vec![]);
        assert_eq!(parse_trusted("::1,fd00::/8").unwrap().len(), 2);
        let e = parse_trusted("10.0.0.0/8,proxy.local").unwrap_err();
        assert_eq!(e, NotANetwork("proxy.local".into()));
        assert!(e.to_string().contains("\"proxy.local\""), "{e}");
    }
}
