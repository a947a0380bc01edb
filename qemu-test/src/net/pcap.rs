//! Packet captures in the classic pcap format (what tcpdump and Wireshark
//! read): a 24-byte file header, then a 16-byte record header before each
//! frame. Microsecond time stamps, link type Ethernet.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// The classic pcap magic number (microsecond time stamps).
const MAGIC: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;
/// The longest frame a record holds in full (QEMU's dgram buffer is 68 KiB).
pub(crate) const SNAPLEN: u32 = 65535;

/// Writes frames to a pcap stream.
#[derive(Debug)]
pub(crate) struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Starts a capture: writes the file header.
    pub(crate) fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut header = Vec::with_capacity(24);
        header.extend(MAGIC.to_le_bytes());
        header.extend(2u16.to_le_bytes()); // version 2.4
        header.extend(4u16.to_le_bytes());
        header.extend(0i32.to_le_bytes()); // time zone: UTC
        header.extend(0u32.to_le_bytes()); // accuracy
        header.extend(SNAPLEN.to_le_bytes());
        header.extend(LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out })
    }

    /// Appends one frame seen at `at` (cut to [`SNAPLEN`] bytes, its
    /// original length recorded).
    pub(crate) fn write(&mut self, at: SystemTime, frame: &[u8]) -> io::Result<()> {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let kept = &frame[..frame.len().min(SNAPLEN as usize)];
        let mut record = Vec::with_capacity(16);
        record.extend((since.as_secs() as u32).to_le_bytes());
        record.extend(since.subsec_micros().to_le_bytes());
        record.extend((kept.len() as u32).to_le_bytes());
        record.extend((frame.len() as u32).to_le_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(kept)
    }

    /// Flushes what was written to the underlying writer.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One frame of a capture, as [`read`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the switch received it.
    pub time: SystemTime,
    /// The frame (whole, unless it was longer than the capture's limit).
    pub frame: Vec<u8>,
}

/// Reads a capture this crate wrote (classic pcap, little-endian,
/// microseconds), e.g. a network's [`pcap`](crate::net::Network::pcap)
/// file, to check in a test which frames went over it.
///
/// ```no_run
/// # fn demo(lan: &qemu_test::net::Network) -> std::io::Result<()> {
/// let frames = qemu_test::net::read_pcap(&std::fs::read(lan.pcap())?)?;
/// println!("{} frames", frames.len());
/// # Ok(()) }
/// ```
pub fn read(bytes: &[u8]) -> io::Result<Vec<Record>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let word = |at: usize| -> io::Result<u32> {
        let b = bytes.get(at..at + 4).ok_or_else(|| bad("truncated pcap"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(0)? != MAGIC || word(20)? != LINKTYPE_ETHERNET {
        return Err(bad("not a little-endian microsecond Ethernet pcap"));
    }
    let mut records = Vec::new();
    let mut at = 24;
    // A capture still being written may end in a partial record.
    while at + 16 <= bytes.len() {
        let (secs, micros, kept) = (word(at)?, word(at + 4)?, word(at + 8)? as usize);
        let Some(frame) = bytes.get(at + 16..at + 16 + kept) else {
            break;
        };
        let time = UNIX_EPOCH
            + std::time::Duration::from_secs(secs.into())
            + std::time::Duration::from_micros(micros.into());
        records.push(Record {
            time,
            frame: frame.to_vec(),
        });
        at += 16 + kept;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn headers_are_the_classic_format() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        w.write(at, &[0xff; 60]).unwrap();
        let bytes = w.out;
        assert_eq!(bytes.len(), 24 + 16 + 60);
        assert_eq!(&bytes[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&bytes[4..8], &[2, 0, 4, 0]);
        assert_eq!(&bytes[16..20], &65535u32.to_le_bytes());
        assert_eq!(&bytes[20..24], &1u32.to_le_bytes());
        assert_eq!(&bytes[24..28], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &123_456u32.to_le_bytes());
        assert_eq!(&bytes[32..36], &60u32.to_le_bytes());
        assert_eq!(&bytes[36..40], &60u32.to_le_bytes());
        let records = read(&bytes).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].frame, vec![0xff; 60]);
        assert_eq!(
            records[0].time,
            UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000)
        );
    }

    #[test]
    fn long_frames_are_cut_and_partial_records_ignored() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(SystemTime::now(), &vec![1; 70_000]).unwrap();
        w.write(SystemTime::now(), &[2; 14]).unwrap();
        let mut bytes = w.out;
        assert_eq!(&bytes[32..36], &SNAPLEN.to_le_bytes());
        assert_eq!(&bytes[36..40], &70_000u32.to_le_bytes());
        bytes.truncate(bytes.len() - 3);
        let records = read(&bytes).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].frame.len(), SNAPLEN as usize);
        assert!(read(b"not a capture at all....").is_err());
    }
}
