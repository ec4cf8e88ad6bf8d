//! Property tests of the DRS4 calibration-file parser: garbage and truncation never panic
//! and never yield tables with other than 1024 finite values.

use daq_drivers::drs4::calibration::FILE_HEADER;
use daq_drivers::drs4::Drs4Calibration;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn garbage_never_panics(text in "\\PC{0,400}") {
        let _ = Drs4Calibration::parse(&text, "g.txt");
        let _ = Drs4Calibration::parse(&format!("{FILE_HEADER}\n{text}"), "g.txt");
    }

    #[test]
    fn truncated_tables_are_errors(cut in 1usize..1024, input in 1usize..=4) {
        let values: Vec<String> = (0..cut).map(|i| (i as f32 * 0.5).to_string()).collect();
        let text = format!("{FILE_HEADER}\noffset {input} {}\n", values.join(" "));
        let err = Drs4Calibration::parse(&text, "t.txt").unwrap_err();
        prop_assert!(err.to_string().starts_with("t.txt:2:"), "{}", err);
    }

}

proptest! {
    // Each case formats and parses 8 × 1024 numbers; a few cases show the round trip.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn parsed_tables_hold_what_was_written(seed in any::<u32>()) {
        let mut cal = Drs4Calibration::nominal();
        for (i, v) in cal.offset[3].iter_mut().enumerate() {
            *v = ((seed as usize ^ i) % 4000) as f32 - 2000.0;
        }
        let back = Drs4Calibration::parse(&cal.to_text(), "r.txt").unwrap();
        prop_assert_eq!(back, cal);
    }
}

#[test]
fn non_finite_and_non_positive_values_are_refused() {
    let nan = format!("{FILE_HEADER}\ngain 1 NaN{}\n", " 1".repeat(1023));
    assert!(Drs4Calibration::parse(&nan, "n.txt")
        .unwrap_err()
        .to_string()
        .contains("not finite"));
    let zero = format!("{FILE_HEADER}\ndt 0{}\n", " 0.2".repeat(1023));
    assert!(Drs4Calibration::parse(&zero, "z.txt")
        .unwrap_err()
        .to_string()
        .contains("positive"));
    let wrong_input = format!("{FILE_HEADER}\noffset 5{}\n", " 0".repeat(1024));
    assert!(Drs4Calibration::parse(&wrong_input, "w.txt")
        .unwrap_err()
        .to_string()
        .starts_with("w.txt:2:"));
}
