//! `NO_PROXY` matching, as curl does it: a comma (or space) separated list
//! of `*`, domain names (matching the name and its subdomains, with or
//! without a leading dot), IP addresses, CIDR blocks, each optionally with
//! `:port` to exempt only that port.

use std::net::IpAddr;

/// Whether `list` exempts `host:port` from the proxy.
pub fn matches(list: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| entry_matches(entry, &host, ip, port))
}

fn entry_matches(entry: &str, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    let (name, want_port) = split_port(entry);
    if want_port.is_some_and(|p| p != port) {
        return false;
    }
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if let Some((net, bits)) = name.split_once('/') {
        return match (ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let (Some(ip), Ok(entry_ip)) = (ip, name.parse::<IpAddr>()) {
        return ip == entry_ip;
    }
    let name = name.trim_start_matches("*.").trim_start_matches('.');
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && (host == name
            || host
                .strip_suffix(name)
                .is_some_and(|rest| rest.ends_with('.')))
}

/// `host:port` → (`host`, port); a bare IPv6 address has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, p.parse().ok());
        }
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn domains_match_themselves_and_subdomains_only() {
        let list = "example.com, .corp.internal";
        assert!(matches(list, "example.com", 443));
        assert!(matches(list, "api.example.com", 443));
        assert!(!matches(list, "notexample.com", 443));
        assert!(matches(list, "corp.internal", 443));
        assert!(matches(list, "a.b.corp.internal", 443));
        assert!(!matches(list, "internal", 443));
        assert!(matches("EXAMPLE.com", "Api.Example.COM.", 443));
    }

    #[test]
    fn star_ports_ips_and_cidrs() {
        assert!(matches("*", "anything", 1));
        assert!(matches("localhost:8080", "localhost", 8080));
        assert!(!matches("localhost:8080", "localhost", 443));
        assert!(matches("127.0.0.1", "127.0.0.1", 9));
        assert!(!matches("127.0.0.1", "127.0.0.2", 9));
        assert!(matches("10.0.0.0/8", "10.2.3.4", 443));
        assert!(!matches("10.0.0.0/8", "11.2.3.4", 443));
        assert!(matches("::1", "::1", 443));
        assert!(matches("[::1]:443", "[::1]", 443));
        assert!(matches("fd00::/8", "fd12::1", 443));
        assert!(!matches("", "example.com", 443));
        assert!(!matches("10.0.0.0/8", "example.com", 443));
    }
}
