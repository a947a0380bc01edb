//! The frames the guest agent (`guests/agent/agent.c`, whose header
//! comment is the protocol's reference) and the host exchange over the
//! data channel: a 12-byte header (`'q'`, `'t'`, type, flags = 0, u32 id,
//! u32 payload length; little-endian) and the payload.

/// The header's size.
pub(super) const HEADER: usize = 12;

/// The protocol version this host speaks (the agent's is in its PONG).
pub(super) const VERSION: u32 = 1;

/// The most one frame sent to the agent carries (the agent takes up to
/// 1 MiB; smaller frames let a deadline or an early answer interrupt a
/// copy sooner).
pub(super) const MAX_SEND: usize = 256 << 10;

/// The most the agent says it sends in one frame, with room to spare: a
/// larger length means the stream is out of step.
const MAX_RECEIVE: usize = 4 << 20;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Hello = 1,
    Ping = 2,
    Pong = 3,
    Run = 4,
    Out = 5,
    Err = 6,
    Exit = 7,
    Put = 8,
    Get = 9,
    Data = 10,
    End = 11,
    Kill = 12,
    Error = 13,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Ping,
            3 => Kind::Pong,
            4 => Kind::Run,
            5 => Kind::Out,
            6 => Kind::Err,
            7 => Kind::Exit,
            8 => Kind::Put,
            9 => Kind::Get,
            10 => Kind::Data,
            11 => Kind::End,
            12 => Kind::Kill,
            13 => Kind::Error,
            _ => return None,
        })
    }
}

/// The header of a frame of `kind` for request `id` with `len` payload
/// bytes.
pub(super) fn header(kind: Kind, id: u32, len: usize) -> [u8; HEADER] {
    let len = u32::try_from(len).expect("frames are far smaller than 4 GiB");
    let mut h = [0u8; HEADER];
    h[0] = b'q';
    h[1] = b't';
    h[2] = kind as u8;
    h[4..8].copy_from_slice(&id.to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h
}

/// A whole frame: header and payload.
pub(super) fn frame(kind: Kind, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.extend_from_slice(&header(kind, id, payload.len()));
    f.extend_from_slice(payload);
    f
}

/// A frame read from the agent; its payload is `bytes[payload]` of the
/// buffer it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frame {
    pub(super) kind: Kind,
    pub(super) id: u32,
    pub(super) payload: std::ops::Range<usize>,
}

/// The frame at the start of `bytes`: `Ok(None)` if it is not all there
/// yet, an error if `bytes` does not start with a valid header.
pub(super) fn parse(bytes: &[u8]) -> Result<Option<Frame>, String> {
    let magic_ok =
        bytes.first().is_none_or(|&b| b == b'q') && bytes.get(1).is_none_or(|&b| b == b't');
    if !magic_ok {
        return Err(format!(
            "a frame starts with {:02x?}",
            &bytes[..bytes.len().min(16)]
        ));
    }
    if bytes.len() < HEADER {
        return Ok(None);
    }
    let kind =
        Kind::from_byte(bytes[2]).ok_or_else(|| format!("unknown frame type {}", bytes[2]))?;
    if bytes[3] != 0 {
        return Err(format!("frame flags {:#x}", bytes[3]));
    }
    let id = u32_at(bytes, 4);
    let len = u32_at(bytes, 8) as usize;
    if len > MAX_RECEIVE {
        return Err(format!("a frame of {len} bytes"));
    }
    if bytes.len() < HEADER + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        kind,
        id,
        payload: HEADER..HEADER + len,
    }))
}

/// The little-endian u32 at `at` (which must be in `bytes`).
pub(super) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The little-endian u64 at `at`.
pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = frame(Kind::Run, 7, b"echo hi");
        assert_eq!(&f[..4], b"qt\x04\x00");
        assert_eq!(parse(&f[..5]), Ok(None));
        assert_eq!(parse(&f[..f.len() - 1]), Ok(None));
        let got = parse(&f).unwrap().unwrap();
        assert_eq!((got.kind, got.id), (Kind::Run, 7));
        assert_eq!(&f[got.payload], b"echo hi");
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"q"), Ok(None));
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(parse(b"xt").is_err());
        assert!(parse(b"qx").is_err());
        assert!(parse(b"qt\x63\x00\x01\x00\x00\x00\x00\x00\x00\x00").is_err());
        assert!(parse(b"qt\x05\x01\x01\x00\x00\x00\x00\x00\x00\x00").is_err());
        assert!(parse(b"qt\x05\x00\x01\x00\x00\x00\x00\x00\x00\x10").is_err());
    }
}
