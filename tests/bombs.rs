//! Decompression bombs: a file whose header claims a huge image is refused
//! from the header, before anything is allocated, so `pvtherm detect` stays
//! small in memory (peak RSS measured through the child's rusage).

use std::io::Cursor;
use std::process::Command;

/// A 4x4 grey PNG whose IHDR claims 20000x20000 pixels (400 Mpx; decoding
/// it would take gigabytes).
fn png_bomb() -> Vec<u8> {
    let mut png = Vec::new();
    image::GrayImage::new(4, 4)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// PNG's CRC-32, bit by bit (the IHDR chunk must stay valid).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Peak resident set of the waited-for children so far, in MiB.
fn children_peak_rss_mib() -> f64 {
    // SAFETY: getrusage writes into the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    usage.ru_maxrss as f64 / 1024.0 // kilobytes on Linux
}

#[test]
fn a_png_claiming_400_mpx_is_refused_with_the_limit_and_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb.png");
    std::fs::write(&file, png_bomb()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(["detect", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("20000x20000") && stderr.contains("32 Mpx"),
        "{stderr}"
    );
    // The models alone take about 50 MB; decoding the bomb would take 400 MB
    // at one byte a pixel.
    let peak = children_peak_rss_mib();
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB");
}
