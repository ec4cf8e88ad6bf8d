//! Property tests of the Intel-HEX parser: garbage, truncation and interleaving never
//! panic and never yield an image the input did not describe.

use daq_drivers::hantek6022::firmware::{FirmwareError, FirmwareImage};
use proptest::prelude::*;

fn record(kind: u8, address: u16, data: &[u8]) -> String {
    let mut bytes = vec![data.len() as u8, (address >> 8) as u8, address as u8, kind];
    bytes.extend_from_slice(data);
    let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    bytes.push(0u8.wrapping_sub(sum));
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!(":{hex}\n")
}

proptest! {
    #[test]
    fn garbage_never_panics(text in "\\PC{0,300}") {
        let _ = FirmwareImage::from_intel_hex(&text, "g.hex");
    }

    #[test]
    fn garbage_binary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = FirmwareImage::from_intel_hex(&text, "g.hex");
    }

    /// Valid records at distinct 16-byte blocks parse to exactly their bytes.
    #[test]
    fn valid_records_round_trip(blocks in proptest::collection::btree_map(0u16..256, proptest::collection::vec(any::<u8>(), 1..16), 1..20)) {
        let mut text = String::new();
        for (block, data) in &blocks {
            text += &record(0, block * 16, data);
        }
        text += ":00000001FF\n";
        let image = FirmwareImage::from_intel_hex(&text, "ok.hex").unwrap();
        prop_assert_eq!(image.len(), blocks.values().map(|d| d.len()).sum::<usize>());
        for (block, data) in &blocks {
            let addr = block * 16;
            let seg = image.segments.iter().find(|(s, d)| *s <= addr && (addr as usize) < *s as usize + d.len()).unwrap();
            let at = (addr - seg.0) as usize;
            prop_assert_eq!(&seg.1[at..at + data.len()], &data[..]);
        }
    }

    /// Cutting a valid file anywhere before its end record is an error, never a shorter image.
    #[test]
    fn truncation_is_an_error(data in proptest::collection::vec(any::<u8>(), 1..16), cut in 0usize..60) {
        let text = record(0, 0x100, &data) + ":00000001FF\n";
        let cut = cut.min(text.len() - 13);
        let truncated = &text[..cut];
        prop_assert!(FirmwareImage::from_intel_hex(truncated, "t.hex").is_err());
    }

    /// Two records interleaved character by character (a second ':' inside the first
    /// record) are refused at line 1, never merged into an image.
    #[test]
    fn interleaved_records_fail_at_line_one(a in proptest::collection::vec(any::<u8>(), 1..8), b in proptest::collection::vec(any::<u8>(), 1..8)) {
        let ra = record(0, 0, &a);
        let rb = record(0, 0x40, &b);
        let mixed: String = ra.chars().zip(rb.chars()).flat_map(|(x, y)| [x, y]).collect();
        let result = FirmwareImage::from_intel_hex(&(mixed + ":00000001FF\n"), "m.hex");
        prop_assert!(matches!(result, Err(FirmwareError::Hex { line: 1, .. })), "{:?}", result);
    }
}
