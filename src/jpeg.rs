//! JPEG marker segments before the image data: the one walker that the
//! thermal container readers ([`crate::flir`], [`crate::dji`],
//! [`crate::exif`]) share, so that truncation and corruption are reported
//! the same way (with the byte offset) whatever the vendor.

use thiserror::Error;

/// One marker segment (APPn, DQT, SOF, ...) of a JPEG file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    /// The marker byte after 0xFF (0xE1 = APP1, 0xE3 = APP3, ...).
    pub(crate) marker: u8,
    /// Byte offset of the segment's 0xFF marker in the file, for messages.
    pub(crate) offset: usize,
    /// The payload after the two length bytes.
    pub(crate) payload: &'a [u8],
}

impl Segment<'_> {
    /// "APP3" for application segments, "FFDB" style otherwise: the name
    /// exiftool -v prints, so a message can be checked against it.
    pub(crate) fn name(&self) -> String {
        match self.marker {
            0xE0..=0xEF => format!("APP{}", self.marker - 0xE0),
            m => format!("FF{m:02X}"),
        }
    }
}

/// Why the segments of a JPEG could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub(crate) enum JpegError {
    /// No SOI marker (FF D8) at the start.
    #[error("not a JPEG: no SOI marker (FF D8) at byte 0")]
    NotJpeg,
    /// The file ends before the image data.
    #[error("JPEG truncated: {0}; the file was cut short (copy it again from the camera's card)")]
    Truncated(String),
    /// A marker or a length that cannot be right.
    #[error("JPEG corrupt: {0}")]
    Corrupt(String),
}

/// The marker segments from SOI up to the start of scan (SOS) or end of image,
/// in file order. Standalone markers (RSTn, TEM) carry no payload and are
/// skipped; fill bytes 0xFF before a marker are allowed.
pub(crate) fn segments(jpeg: &[u8]) -> Result<Vec<Segment<'_>>, JpegError> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err(JpegError::NotJpeg);
    }
    let mut out = Vec::new();
    let mut pos = 2;
    loop {
        if pos >= jpeg.len() {
            return Err(JpegError::Truncated(format!(
                "ends at byte {pos} before the image data (no SOS marker)"
            )));
        }
        if jpeg[pos] != 0xFF {
            return Err(JpegError::Corrupt(format!(
                "marker expected at byte {pos}, found 0x{:02x}",
                jpeg[pos]
            )));
        }
        let offset = pos;
        while pos < jpeg.len() && jpeg[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = jpeg.get(pos) else {
            continue;
        };
        pos += 1;
        match marker {
            0xDA | 0xD9 => return Ok(out),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len = match jpeg.get(pos..pos + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => {
                return Err(JpegError::Truncated(format!(
                    "ends inside the length of segment FF{marker:02X} at byte {offset}"
                )))
            }
        };
        if len < 2 {
            return Err(JpegError::Corrupt(format!(
                "segment FF{marker:02X} at byte {offset} has length {len}"
            )));
        }
        let end = pos + len;
        if end > jpeg.len() {
            return Err(JpegError::Truncated(format!(
                "segment FF{marker:02X} at byte {offset} needs {len} bytes, only {} are left",
                jpeg.len() - pos
            )));
        }
        out.push(Segment {
            marker,
            offset,
            payload: &jpeg[pos + 2..end],
        });
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, one segment of `payload` with `marker`, SOS.
    fn jpeg_with(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8, 0xFF, marker];
        j.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        j.extend_from_slice(payload);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02]);
        j
    }

    #[test]
    fn walks_segments_with_offsets_and_names() {
        let j = jpeg_with(0xE3, b"abc");
        let s = segments(&j).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].marker, 0xE3);
        assert_eq!(s[0].offset, 2);
        assert_eq!(s[0].payload, b"abc");
        assert_eq!(s[0].name(), "APP3");
    }

    #[test]
    fn truncation_and_corruption_name_the_byte() {
        let j = jpeg_with(0xE4, &[0u8; 100]);
        let e = segments(&j[..50]).unwrap_err();
        assert!(matches!(e, JpegError::Truncated(_)), "{e}");
        assert!(e.to_string().contains("byte 2"), "{e}");
        let mut bad = j.clone();
        bad[2] = 0x00;
        assert!(segments(&bad).unwrap_err().to_string().contains("byte 2"));
        assert_eq!(segments(b"GIF89a").unwrap_err(), JpegError::NotJpeg);
    }
}
