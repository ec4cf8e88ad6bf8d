//! What the crate's unit tests share.

use proptest::prelude::ProptestConfig;
use proptest::test_runner::RngSeed;

/// A property test that runs the same cases on every machine and every run: the cases come
/// from `seed`, and no failure file is written next to the sources.
pub(crate) fn fixed_seed(seed: u64) -> ProptestConfig {
    ProptestConfig {
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
