//! Just enough of the DNS wire format (RFC 1035, RFC 3596) to ask a
//! resolver for A and AAAA records and read its answer, rcode included.

use std::net::IpAddr;

/// Record types the doctor asks for.
pub const A: u16 = 1;
/// IPv6 address.
pub const AAAA: u16 = 28;

/// A resolver's answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// 0 = no error, 3 = NXDOMAIN, 2 = SERVFAIL, …
    pub rcode: u8,
    /// Addresses with their TTLs.
    pub addrs: Vec<(IpAddr, u32)>,
}

/// A recursive query for `name`, type `qtype`, with id `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; 1 question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` is not a valid host name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// Parses the answer to the query with id `id`.
pub fn parse(id: u16, msg: &[u8]) -> Result<Answer, String> {
    let short = || "the answer is truncated".to_owned();
    let u16_at = |i: usize| -> Result<u16, String> {
        Ok(u16::from_be_bytes([
            *msg.get(i).ok_or_else(short)?,
            *msg.get(i + 1).ok_or_else(short)?,
        ]))
    };
    if u16_at(0)? != id {
        return Err("the answer is for another query".to_owned());
    }
    let rcode = msg[3] & 0x0f;
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(msg, i)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..answers {
        i = skip_name(msg, i)?;
        let rtype = u16_at(i)?;
        let ttl = (u32::from(u16_at(i + 4)?) << 16) | u32::from(u16_at(i + 6)?);
        let len = usize::from(u16_at(i + 8)?);
        let data = msg.get(i + 10..i + 10 + len).ok_or_else(short)?;
        match (rtype, len) {
            (A, 4) => addrs.push((IpAddr::from(<[u8; 4]>::try_from(data).unwrap()), ttl)),
            (AAAA, 16) => addrs.push((IpAddr::from(<[u8; 16]>::try_from(data).unwrap()), ttl)),
            _ => {} // CNAMEs and the like: the addresses follow.
        }
        i += 10 + len;
    }
    Ok(Answer { rcode, addrs })
}

/// The offset just past the (possibly compressed) name at `i`.
fn skip_name(msg: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(i).ok_or("the answer is truncated")?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xc0 == 0xc0 => return Ok(i + 2),
            l => i += 1 + usize::from(l),
        }
    }
}

/// A resolver's rcode in words.
pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "no error".to_owned(),
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        3 => "NXDOMAIN".to_owned(),
        5 => "REFUSED".to_owned(),
        n => format!("rcode {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_through_an_answer() {
        let q = query(0x1234, "api.example.com", A).unwrap();
        assert_eq!(&q[12..16], b"\x03api");
        // The answer: the question echoed, then one A record by pointer.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 0, 0, 7]);
        let a = parse(0x1234, &r).unwrap();
        assert_eq!(a.rcode, 0);
        assert_eq!(a.addrs, [("10.0.0.7".parse().unwrap(), 3600)]);
        assert!(parse(0x9999, &r).is_err(), "another query's answer");
        assert!(parse(0x1234, &r[..r.len() - 2]).is_err(), "truncated");
    }

    #[test]
    fn nxdomain_and_bad_names_are_told_apart() {
        let mut r = query(7, "nope.example", AAAA).unwrap();
        r[3] = 0x83;
        assert_eq!(parse(7, &r).unwrap().rcode, 3);
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert!(query(1, "a..b", A).is_err());
    }
}
