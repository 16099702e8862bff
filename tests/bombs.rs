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

/// `detect --config` reads files with the configuration's `[source]
/// max_pixels`: a limit below a real 640x512 frame refuses it, naming the
/// key to raise.
#[test]
fn detect_takes_the_pixel_limit_from_its_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[source]\nmax_pixels = 100000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(["detect", "--json", "--config"])
        .arg(&config)
        .arg("tests/fixtures/pv/images/001R.jpg")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("640x512") && stderr.contains("[source] max_pixels = 100000"),
        "{stderr}"
    );
}

/// Peak resident set of this test process so far, in MiB (`VmHWM`).
fn own_peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// The fixture FFF with its RawData record claiming `width` x `height`.
fn fff_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut fff = std::fs::read("tests/fixtures/fff/frame_000000_le.fff").unwrap();
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let (dir, count) = (u32_at(&fff, 0x18) as usize, u32_at(&fff, 0x1c) as usize);
    let raw = (0..count)
        .map(|i| dir + i * 0x20)
        .find(|&e| u16::from_le_bytes([fff[e], fff[e + 1]]) == 1)
        .map(|e| u32_at(&fff, e + 0x0c) as usize)
        .expect("the fixture has a RawData record");
    fff[raw + 2..raw + 4].copy_from_slice(&width.to_le_bytes());
    fff[raw + 4..raw + 6].copy_from_slice(&height.to_le_bytes());
    fff
}

/// The formats pvtherm reads without the image crate take the frame size
/// from a file name or a header, and accept it only when the file holds that
/// many bytes: a claim of a huge frame over a small file is refused before
/// anything of the claimed size is allocated.
#[test]
fn raw_formats_claiming_huge_frames_are_refused_from_the_file_length() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, bytes: &[u8]| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        format!("{:#}", pvtherm::imageio::load_frame(&path, 0).unwrap_err())
    };
    // A .y16 named 60000x60000 (7.2 GB of u16) holding 16 bytes.
    let err = refused("bomb.60000x60000.y16", &[0; 16]);
    assert!(
        err.contains("60000x60000") && err.contains("16 bytes"),
        "{err}"
    );
    // An FFF whose RawData header claims 16384x16384 (the most the reader
    // takes, 512 MiB of u16) over the 320x240 plane the file holds.
    let err = refused("bomb.fff", &fff_claiming(16_384, 16_384));
    assert!(err.contains("16384x16384"), "{err}");
    // A tCam .tjsn holds one 160x120 or 80x60 plane: 1 MB of base64 is refused
    // by its decoded length.
    let json = format!("{{\"radiometric\": \"{}\"}}", "A".repeat(1 << 20));
    let err = refused("bomb.tjsn", json.as_bytes());
    assert!(err.contains("not a known raw frame size"), "{err}");
    let peak = own_peak_rss_mib();
    eprintln!("raw format claims refused; peak RSS {peak:.0} MiB");
    assert!(peak < 256.0, "peak RSS {peak:.0} MiB");
}
