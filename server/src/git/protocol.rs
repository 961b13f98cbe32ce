//! The bits of git's smart HTTP protocol a push needs (receive-pack, protocol v0/v1): pkt-lines,
//! the ref advertisement, the push commands, side-band packets and the status report.
//! Pure data; tested against what `git` sends and expects.

use bytes::{BufMut, Bytes, BytesMut};

pub const ZERO_OID: &str = "0000000000000000000000000000000000000000";
/// What we tell clients we support. No `delete-refs`: branches are not deleted through caas.
pub const CAPABILITIES: &str = "report-status side-band-64k quiet ofs-delta agent=caas";
/// Largest side-band payload (65520 total minus the length and the band byte).
const MAX_BAND_DATA: usize = 65515;

/// One pkt-line holding `data`.
pub fn pkt(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 4);
    b.put_slice(format!("{:04x}", data.len() + 4).as_bytes());
    b.put_slice(data);
    b.freeze()
}

pub const FLUSH: &[u8] = b"0000";

/// `GET info/refs?service=git-receive-pack` body: the service line, then every ref (the first
/// carrying the capabilities), or the capabilities on a placeholder when there are none.
pub fn advertisement(refs: &[(String, String)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put(pkt(b"# service=git-receive-pack\n"));
    b.put_slice(FLUSH);
    if refs.is_empty() {
        b.put(pkt(format!(
            "{ZERO_OID} capabilities^{{}}\0{CAPABILITIES}\n"
        )
        .as_bytes()));
    }
    for (i, (oid, name)) in refs.iter().enumerate() {
        let line = if i == 0 {
            format!("{oid} {name}\0{CAPABILITIES}\n")
        } else {
            format!("{oid} {name}\n")
        };
        b.put(pkt(line.as_bytes()));
    }
    b.put_slice(FLUSH);
    b.freeze()
}

/// One `OLD NEW REF` command of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub old: String,
    pub new: String,
    pub refname: String,
}

impl Command {
    pub fn is_delete(&self) -> bool {
        self.new == ZERO_OID
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed pkt-line")]
    Malformed,
    #[error("malformed push command {0:?}")]
    BadCommand(String),
}

/// Parses the command section of a receive-pack request. Returns the commands, the client's
/// capabilities, and where the pack data begins.
pub fn parse_commands(body: &[u8]) -> Result<(Vec<Command>, Vec<String>, usize), ProtocolError> {
    let mut pos = 0;
    let mut commands = Vec::new();
    let mut caps = Vec::new();
    loop {
        let len_hex = body.get(pos..pos + 4).ok_or(ProtocolError::Malformed)?;
        let len = usize::from_str_radix(
            std::str::from_utf8(len_hex).map_err(|_| ProtocolError::Malformed)?,
            16,
        )
        .map_err(|_| ProtocolError::Malformed)?;
        if len == 0 {
            pos += 4;
            break;
        }
        if len < 4 {
            return Err(ProtocolError::Malformed);
        }
        let data = body
            .get(pos + 4..pos + len)
            .ok_or(ProtocolError::Malformed)?;
        pos += len;
        let (line, cap_part) = match data.iter().position(|&b| b == 0) {
            Some(i) => (&data[..i], Some(&data[i + 1..])),
            None => (data, None),
        };
        if let Some(c) = cap_part {
            caps = String::from_utf8_lossy(c)
                .split_whitespace()
                .map(str::to_string)
                .collect();
        }
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\n')
            .to_string();
        // A push certificate or shallow info is not something we take.
        let mut parts = line.splitn(3, ' ');
        let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ProtocolError::BadCommand(line));
        };
        let hex = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(old) || !hex(new) || refname.is_empty() {
            return Err(ProtocolError::BadCommand(line));
        }
        commands.push(Command {
            old: old.into(),
            new: new.into(),
            refname: refname.into(),
        });
    }
    Ok((commands, caps, pos))
}

/// Side-band packets of `band` (1 data, 2 progress, 3 fatal) carrying `data`.
pub fn band(band: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    for chunk in data.chunks(MAX_BAND_DATA) {
        let mut payload = Vec::with_capacity(chunk.len() + 1);
        payload.push(band);
        payload.extend_from_slice(chunk);
        b.put(pkt(&payload));
    }
    b.freeze()
}

/// A progress line, shown by git as `remote: TEXT`.
pub fn progress(text: &str) -> Bytes {
    band(2, format!("{text}\n").as_bytes())
}

/// The status report: `unpack ok`, then `ok REF` or `ng REF REASON` per command.
pub fn report(unpack_ok: bool, results: &[(String, Result<(), String>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put(pkt(if unpack_ok {
        b"unpack ok\n"
    } else {
        b"unpack error\n"
    }));
    for (refname, r) in results {
        let line = match r {
            Ok(()) => format!("ok {refname}\n"),
            Err(reason) => format!("ng {refname} {}\n", reason.replace('\n', " ")),
        };
        b.put(pkt(line.as_bytes()));
    }
    b.put_slice(FLUSH);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines_are_length_prefixed() {
        assert_eq!(&pkt(b"a\n")[..], b"0006a\n");
        assert_eq!(&pkt(b"")[..], b"0004");
    }

    #[test]
    fn an_empty_repository_advertises_capabilities_on_a_placeholder() {
        let adv = advertisement(&[]);
        let text = String::from_utf8_lossy(&adv);
        assert!(text.starts_with("001f# service=git-receive-pack\n0000"));
        assert!(text.contains(&format!("{ZERO_OID} capabilities^{{}}\0report-status")));
        assert!(text.ends_with("0000"));
    }

    #[test]
    fn refs_carry_capabilities_on_the_first_line_only() {
        let oid = "1".repeat(40);
        let adv = advertisement(&[
            (oid.clone(), "refs/heads/main".into()),
            (oid.clone(), "refs/heads/x".into()),
        ]);
        let text = String::from_utf8_lossy(&adv);
        assert_eq!(text.matches("report-status").count(), 1);
        assert!(text.contains(&format!("{oid} refs/heads/x\n")));
    }

    #[test]
    fn commands_and_the_pack_offset_are_parsed() {
        let (old, new) = (ZERO_OID.to_string(), "a".repeat(40));
        let mut body = Vec::new();
        body.extend_from_slice(&pkt(format!(
            "{old} {new} refs/heads/main\0report-status side-band-64k agent=git/2.47\n"
        )
        .as_bytes()));
        body.extend_from_slice(&pkt(format!("{new} {old} refs/heads/gone\n").as_bytes()));
        body.extend_from_slice(FLUSH);
        body.extend_from_slice(b"PACK....");
        let (cmds, caps, at) = parse_commands(&body).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            cmds[0],
            Command {
                old: old.clone(),
                new: new.clone(),
                refname: "refs/heads/main".into()
            }
        );
        assert!(cmds[1].is_delete());
        assert_eq!(caps, ["report-status", "side-band-64k", "agent=git/2.47"]);
        assert_eq!(&body[at..], b"PACK....");
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_commands(b"zzzz"), Err(ProtocolError::Malformed));
        assert_eq!(parse_commands(b"0003"), Err(ProtocolError::Malformed));
        assert_eq!(parse_commands(b"00ff short"), Err(ProtocolError::Malformed));
        assert!(matches!(
            parse_commands(&[&pkt(b"x y z\n")[..], b"0000"].concat()),
            Err(ProtocolError::BadCommand(_))
        ));
    }

    #[test]
    fn bands_split_large_data_and_reports_end_with_flush() {
        let big = vec![b'x'; 70_000];
        let b = band(2, &big);
        assert_eq!(&b[..5], b"fff0\x02");
        assert_eq!(b.len(), 70_000 + 2 * 5);
        let r = report(
            true,
            &[
                ("refs/heads/main".into(), Ok(())),
                ("refs/heads/x".into(), Err("no\nway".into())),
            ],
        );
        assert_eq!(
            &r[..],
            b"000eunpack ok\n0017ok refs/heads/main\n001bng refs/heads/x no way\n0000"
        );
    }
}
