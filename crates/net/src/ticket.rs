//! Tickets: one copy-pasteable string that says which document, whose device, where
//! to reach it, and what the holder may do.
//!
//! Format: `tandem1` followed by lowercase RFC 4648 base32 (no padding) of
//! `version: u8 = 3 | name_len: u8 | name | doc: [u8; 16] | role: u8 | peer_len: u8 |
//! peer id | n: u8 | n x (addr_len: u16 BE | multiaddr bytes) | invite: u8 (0 none,
//! 1 then id: [u8; 16] | secret: [u8; 16]) | check: [u8; 4]`, where `check` is the
//! start of the BLAKE3 hash of everything before it: a mistyped or mangled ticket is
//! "damaged" at once, instead of a dial to a peer that does not exist.
//!
//! The invite is what lets a new device in: the sharer enrols the device that
//! presents it with the ticket's role, while the invite is valid (`--expires`,
//! `--uses`). A ticket is a secret until it is used up or expires.

use std::fmt;
use std::str::FromStr;

use libp2p::{Multiaddr, PeerId};

use crate::protocol::DocId;

const PREFIX: &str = "tandem1";
/// 2 added the invite, 3 the checksum.
const VERSION: u8 = 3;
const CHECK: usize = 4;
/// Longest ticket accepted (a pasted novel is not a ticket).
pub const MAX_TICKET: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Reader,
    Writer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// File name the document is saved under when joining (a plain name, no path).
    pub name: String,
    pub doc: DocId,
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
    pub role: Role,
    /// The invite (id, secret) that enrols the holder with `role`; none in a ticket
    /// that only says where a member can reach a peer.
    pub invite: Option<([u8; 16], [u8; 16])>,
}

/// Why a string is not a usable ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("not a tandem ticket: it must start with {PREFIX:?} (ask the sharer for `tandem share FILE`)")]
    Prefix,
    #[error("ticket is {0} characters, more than the {MAX_TICKET} a ticket can have")]
    TooLong(usize),
    #[error("damaged ticket ({0}); copy it again in one piece")]
    Damaged(&'static str),
    #[error(
        "ticket version {0} is not the one this tandem reads ({VERSION}); the older and newer tandem must match: update, and ask for a new ticket"
    )]
    Version(u8),
}

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn unbase32(s: &str) -> Result<Vec<u8>, TicketError> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c.to_ascii_lowercase())
            .ok_or(TicketError::Damaged("a character outside the ticket alphabet"))? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Ok(out)
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut b = vec![VERSION];
        let name = &self.name.as_bytes()[..self.name.len().min(255)];
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b.extend_from_slice(&self.doc);
        b.push(match self.role {
            Role::Reader => 0,
            Role::Writer => 1,
        });
        let peer = self.peer.to_bytes();
        b.push(peer.len() as u8);
        b.extend_from_slice(&peer);
        let addrs: Vec<Vec<u8>> = self.addrs.iter().take(255).map(|a| a.to_vec()).collect();
        b.push(addrs.len() as u8);
        for a in addrs {
            b.extend_from_slice(&(a.len() as u16).to_be_bytes());
            b.extend_from_slice(&a);
        }
        match &self.invite {
            Some((id, secret)) => {
                b.push(1);
                b.extend_from_slice(id);
                b.extend_from_slice(secret);
            }
            None => b.push(0),
        }
        let check = checksum(&b);
        b.extend_from_slice(&check);
        write!(f, "{PREFIX}{}", base32(&b))
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Ticket, TicketError> {
        let s = s.trim();
        if s.len() > MAX_TICKET {
            return Err(TicketError::TooLong(s.len()));
        }
        // Either case: QR codes carry tickets in upper case (see `tandem share --qr`).
        let body = match s.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &s[PREFIX.len()..],
            _ => return Err(TicketError::Prefix),
        };
        let bytes = unbase32(body)?;
        if bytes.len() <= CHECK {
            return Err(TicketError::Damaged("it ends too early"));
        }
        let (bytes, check) = bytes.split_at(bytes.len() - CHECK);
        if checksum(bytes) != check {
            // Tickets from an older tandem had no checksum: say so, not "damaged".
            return Err(match bytes[0] {
                v @ (1 | 2) => TicketError::Version(v),
                _ => TicketError::Damaged("its checksum does not match: a character is wrong or missing"),
            });
        }
        let mut r = bytes;
        let mut take = |n: usize| -> Result<&[u8], TicketError> {
            if r.len() < n {
                return Err(TicketError::Damaged("it ends too early"));
            }
            let (head, tail) = r.split_at(n);
            r = tail;
            Ok(head)
        };
        let version = take(1)?[0];
        if version != VERSION {
            return Err(TicketError::Version(version));
        }
        let name_len = take(1)?[0] as usize;
        let name = std::str::from_utf8(take(name_len)?)
            .map_err(|_| TicketError::Damaged("file name is not UTF-8"))?;
        if !is_plain_name(name) {
            return Err(TicketError::Damaged("the file name is not a plain name"));
        }
        let name = name.to_owned();
        let doc: DocId = take(16)?.try_into().expect("16 bytes");
        let role = match take(1)?[0] {
            0 => Role::Reader,
            1 => Role::Writer,
            _ => return Err(TicketError::Damaged("unknown role")),
        };
        let peer_len = take(1)?[0] as usize;
        let peer = PeerId::from_bytes(take(peer_len)?).map_err(|_| TicketError::Damaged("bad peer id"))?;
        let n = take(1)?[0] as usize;
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u16::from_be_bytes(take(2)?.try_into().expect("2 bytes")) as usize;
            addrs.push(
                Multiaddr::try_from(take(len)?.to_vec()).map_err(|_| TicketError::Damaged("bad address"))?,
            );
        }
        let invite = match take(1)?[0] {
            0 => None,
            1 => Some((take(16)?.try_into().expect("16 bytes"), take(16)?.try_into().expect("16 bytes"))),
            _ => return Err(TicketError::Damaged("bad invite flag")),
        };
        if !take(0)?.is_empty() || !r.is_empty() {
            return Err(TicketError::Damaged("trailing data"));
        }
        Ok(Ticket { name, doc, peer, addrs, role, invite })
    }
}

fn checksum(bytes: &[u8]) -> [u8; CHECK] {
    blake3::hash(bytes).as_bytes()[..CHECK].try_into().expect("4 bytes")
}

/// A file name a joiner may create: no directories, no `..`, nothing hidden or odd.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            name: "notes.md".into(),
            doc: [7; 16],
            peer: libp2p::identity::Keypair::generate_ed25519().public().to_peer_id(),
            addrs: vec![
                "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
                "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap(),
            ],
            role: Role::Writer,
            invite: Some(([1; 16], [2; 16])),
        }
    }

    #[test]
    fn tickets_round_trip_and_are_one_word() {
        let t = ticket();
        let s = t.to_string();
        assert!(s.starts_with("tandem1") && s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        assert_eq!(s.parse::<Ticket>().unwrap(), t);
        assert_eq!(format!("  {}\n", s.to_uppercase()).parse::<Ticket>().unwrap(), t);
    }

    #[test]
    fn malformed_tickets_get_errors_that_say_what_is_wrong() {
        let s = ticket().to_string();
        assert_eq!("hello".parse::<Ticket>(), Err(TicketError::Prefix));
        assert!(matches!(s[..s.len() - 10].parse::<Ticket>(), Err(TicketError::Damaged(_))));
        assert!(matches!(format!("{s}!").parse::<Ticket>(), Err(TicketError::Damaged(_))));
        assert!(matches!(
            format!("tandem1{}", "a".repeat(5000)).parse::<Ticket>(),
            Err(TicketError::TooLong(_))
        ));
        let mut bytes = unbase32(&s[7..]).unwrap();
        bytes.truncate(bytes.len() - CHECK);
        bytes[0] = 9;
        let check = checksum(&bytes);
        bytes.extend_from_slice(&check);
        assert_eq!(format!("tandem1{}", base32(&bytes)).parse::<Ticket>(), Err(TicketError::Version(9)));
        // A version 2 ticket (no checksum) is called old, not damaged.
        let mut old = unbase32(&s[7..]).unwrap();
        old.truncate(old.len() - CHECK);
        old[0] = 2;
        assert_eq!(format!("tandem1{}", base32(&old)).parse::<Ticket>(), Err(TicketError::Version(2)));
        for evil in ["../../etc/passwd", "/abs", ".hidden", "", "a\u{0}b"] {
            let mut t = ticket();
            t.name = evil.into();
            assert!(
                matches!(t.to_string().parse::<Ticket>(), Err(TicketError::Damaged(_))),
                "{evil:?} accepted"
            );
        }
        // One mistyped character anywhere is caught (the last one may carry only
        // padding bits, which change nothing).
        let t: Ticket = s.parse().unwrap();
        for i in 7..s.len() {
            for c in ALPHABET.iter().map(|&c| c as char).filter(|&c| s.as_bytes()[i] as char != c) {
                let typo = format!("{}{c}{}", &s[..i], &s[i + 1..]);
                match typo.parse::<Ticket>() {
                    Err(TicketError::Damaged(_)) => {}
                    // The first two characters hold the version byte.
                    Err(TicketError::Version(_)) if i <= 8 => {}
                    Ok(same) if same == t && i == s.len() - 1 => {}
                    other => panic!("{typo} at {i}: {other:?}"),
                }
            }
        }
        // Every truncation fails cleanly.
        for cut in 7..s.len() {
            assert!(s[..cut].parse::<Ticket>().is_err());
        }
    }
}
