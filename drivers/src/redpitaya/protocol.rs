//! The MCPHA TCP protocol of the Red Pitaya (pavel-demin/red-pitaya-notes `mcpha-server.c`,
//! plus code 31 of the JulianBaader fork that mimoCoRB2 uses): the 8-byte command word, the
//! command table and the replies, as pure functions over bytes (HARDWARE.md R.2–R.4).
//!
//! Guarantees: [`Command::encode`] gives exactly the word mimoCoRB2's `struct.pack("<Q", code
//! << 56 | chan << 52 | (value & 0xFFFFFFFFFFFFF))` gives; [`Command::decode`] reads a word as
//! the server does (unknown codes and channels are `None`, values cut to the register's
//! width), so `decode(encode(c)) == c` for every command. Reply decoders check lengths and
//! value ranges and return errors. Must never: do I/O, allocate, or panic on any input.

/// TCP port of the MCPHA server.
pub const PORT: u16 = 1001;
/// Bins of a hardware histogram.
pub const HIST_BINS: usize = 4096;
/// Bytes of a histogram reply (4096 × uint32 LE).
pub const HIST_BYTES: usize = HIST_BINS * 4;
/// Bytes of a status reply.
pub const STATUS_BYTES: usize = 36;
/// Bytes of one sample in a trace: IN1 then IN2, int16 LE each.
pub const SAMPLE_BYTES: usize = 4;
/// Largest total samples per trace the server stores (23-bit register, N−1 stored).
pub const MAX_SAMPLES: u32 = 8_388_607;
/// The oscilloscope ring (2^23 samples).
pub const RING_SAMPLES: u32 = 1 << 23;
/// Mask of the 52-bit data field.
pub const DATA_MASK: u64 = (1 << 52) - 1;
/// Ticks of the 125 MHz clock per second (timers count these).
pub const TICKS_PER_SECOND: f64 = 125e6;
/// Range of a 14-bit sample sign-extended into int16 (HARDWARE.md R.5).
pub const ADC_MIN: i16 = -8192;
/// See [`ADC_MIN`].
pub const ADC_MAX: i16 = 8191;

/// One command word as it travels: code (8 bits), channel (4 bits), data (52 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word {
    /// Bits 63..56.
    pub code: u8,
    /// Bits 55..52 (0..=15).
    pub chan: u8,
    /// Bits 51..0.
    pub data: u64,
}

impl Word {
    /// The 8 bytes on the wire (little-endian uint64); `chan` and `data` are masked.
    pub fn to_bytes(self) -> [u8; 8] {
        let w = (u64::from(self.code) << 56)
            | (u64::from(self.chan & 0xF) << 52)
            | (self.data & DATA_MASK);
        w.to_le_bytes()
    }

    /// Reads 8 wire bytes.
    pub fn from_bytes(b: [u8; 8]) -> Word {
        let w = u64::from_le_bytes(b);
        Word {
            code: (w >> 56) as u8,
            chan: ((w >> 52) & 0xF) as u8,
            data: w & DATA_MASK,
        }
    }
}

/// An input of the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// IN1 (channel 0).
    In1,
    /// IN2 (channel 1).
    In2,
}

impl Input {
    /// The channel number on the wire.
    pub fn chan(self) -> u8 {
        match self {
            Input::In1 => 0,
            Input::In2 => 1,
        }
    }
    fn from_chan(c: u8) -> Option<Input> {
        match c {
            0 => Some(Input::In1),
            1 => Some(Input::In2),
            _ => None,
        }
    }
    /// `IN1` or `IN2`.
    pub fn name(self) -> &'static str {
        match self {
            Input::In1 => "IN1",
            Input::In2 => "IN2",
        }
    }
}

/// Which timers a timer-mode command (code 10) addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timers {
    /// One input's timer.
    One(Input),
    /// Both (channel 2).
    Both,
}

/// Trigger edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slope {
    /// previous < level ≤ current.
    Rising,
    /// previous > level ≥ current.
    Falling,
}

/// Trigger mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerMode {
    /// Only on a crossing.
    Normal,
    /// A crossing, or at once after the pre-trigger samples.
    Auto,
}

/// Pulse generator interval distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Fixed interval round(125e6 / rate) ticks.
    Uniform,
    /// Exponential intervals of mean 1 / rate.
    Poisson,
}

/// Every command of the server (HARDWARE.md R.3), with its value in the register's width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// 0: zero the histogram of an input.
    ResetHistogram(Input),
    /// 1: zero the timer of an input.
    ResetTimer(Input),
    /// 2: stop the oscilloscope and clear its running bit.
    ResetScope,
    /// 3: reset the pulse generator.
    ResetGenerator,
    /// 4: decimation N (N < 4: 125 MS/s; the CIC takes 4..8192).
    SetDecimation(u16),
    /// 5: invert an input.
    SetNegator(Input, bool),
    /// 6: PHA delay of an input (samples \[unverified\]).
    SetPhaDelay(Input, u16),
    /// 7: PHA lower threshold (ADC counts).
    SetPhaMin(Input, u16),
    /// 8: PHA upper threshold (ADC counts).
    SetPhaMax(Input, u16),
    /// 9: timer preset in 125 MHz ticks.
    SetTimerPreset(Input, u64),
    /// 10: run (true) or stop a timer.
    SetTimerMode(Timers, bool),
    /// 11: read the 36-byte status.
    ReadStatus,
    /// 12: read an input's 4096-bin histogram.
    ReadHistogram(Input),
    /// 13: trigger source (in the channel field).
    SetTriggerSource(Input),
    /// 14: trigger slope.
    SetTriggerSlope(Slope),
    /// 15: trigger mode.
    SetTriggerMode(TriggerMode),
    /// 16: trigger level (ADC counts, low 16 bits).
    SetTriggerLevel(i16),
    /// 17: samples before the trigger (≥ 1: the server stores N − 1).
    SetPreSamples(u32),
    /// 18: total samples per trace (1 ..= 8 388 607).
    SetTotalSamples(u32),
    /// 19: arm the oscilloscope.
    StartScope,
    /// 20: read one trace (total × 4 bytes).
    ReadTrace,
    /// 21: generator fall time (µs, 0..=100; others ignored by the server).
    SetGenFallTime(u32),
    /// 22: generator rise time (ns, 0..=100; others ignored by the server).
    SetGenRiseTime(u32),
    /// 23: generator lower output limit.
    SetGenLower(i16),
    /// 24: generator upper output limit.
    SetGenUpper(i16),
    /// 25: generator rate (pulses/s).
    SetGenRate(u32),
    /// 26: generator interval distribution.
    SetGenDistribution(Distribution),
    /// 27: zero the generator's spectrum.
    ResetGenSpectrum,
    /// 28: set one bin (0..4095) of the generator's spectrum.
    SetGenBin {
        /// Bin 0..=4095.
        bin: u16,
        /// Weight.
        weight: u32,
    },
    /// 29: start the generator; `keep_pulsing` keeps it running after the client leaves.
    StartGenerator {
        /// 1 = keep pulsing after disconnect.
        keep_pulsing: bool,
    },
    /// 30: stop the generator.
    StopGenerator,
    /// 31 (fork only): stream this many traces back to back.
    StartDaq(u32),
}

impl Command {
    /// The command word.
    pub fn word(self) -> Word {
        use Command::*;
        let w = |code: u8, chan: u8, data: u64| Word { code, chan, data };
        match self {
            ResetHistogram(i) => w(0, i.chan(), 0),
            ResetTimer(i) => w(1, i.chan(), 0),
            ResetScope => w(2, 0, 0),
            ResetGenerator => w(3, 0, 0),
            SetDecimation(n) => w(4, 0, n.into()),
            SetNegator(i, on) => w(5, i.chan(), on.into()),
            SetPhaDelay(i, d) => w(6, i.chan(), d.into()),
            SetPhaMin(i, v) => w(7, i.chan(), v.into()),
            SetPhaMax(i, v) => w(8, i.chan(), v.into()),
            SetTimerPreset(i, t) => w(9, i.chan(), t & DATA_MASK),
            SetTimerMode(t, run) => w(
                10,
                match t {
                    Timers::One(i) => i.chan(),
                    Timers::Both => 2,
                },
                run.into(),
            ),
            ReadStatus => w(11, 0, 0),
            ReadHistogram(i) => w(12, i.chan(), 0),
            SetTriggerSource(i) => w(13, i.chan(), 0),
            SetTriggerSlope(s) => w(14, 0, matches!(s, Slope::Falling).into()),
            SetTriggerMode(m) => w(15, 0, matches!(m, TriggerMode::Auto).into()),
            SetTriggerLevel(l) => w(16, 0, (i64::from(l) as u64) & DATA_MASK),
            SetPreSamples(n) => w(17, 0, n.into()),
            SetTotalSamples(n) => w(18, 0, n.into()),
            StartScope => w(19, 0, 0),
            ReadTrace => w(20, 0, 0),
            SetGenFallTime(t) => w(21, 0, t.into()),
            SetGenRiseTime(t) => w(22, 0, t.into()),
            SetGenLower(v) => w(23, 0, (i64::from(v) as u64) & DATA_MASK),
            SetGenUpper(v) => w(24, 0, (i64::from(v) as u64) & DATA_MASK),
            SetGenRate(r) => w(25, 0, r.into()),
            SetGenDistribution(d) => w(26, 0, matches!(d, Distribution::Poisson).into()),
            ResetGenSpectrum => w(27, 0, 0),
            SetGenBin { bin, weight } => {
                w(28, 0, (u64::from(bin & 0xFFF) << 32) | u64::from(weight))
            }
            StartGenerator { keep_pulsing } => w(29, 0, keep_pulsing.into()),
            StopGenerator => w(30, 0, 0),
            StartDaq(n) => w(31, 0, n.into()),
        }
    }

    /// The 8 bytes on the wire.
    pub fn encode(self) -> [u8; 8] {
        self.word().to_bytes()
    }

    /// Reads 8 wire bytes as the server does; `None` for what it ignores (unknown code or
    /// channel, a generator setting out of its range, a bin beyond 4095).
    pub fn decode(b: [u8; 8]) -> Option<Command> {
        Command::from_word(Word::from_bytes(b))
    }

    /// See [`Command::decode`].
    pub fn from_word(w: Word) -> Option<Command> {
        use Command::*;
        let input = || Input::from_chan(w.chan);
        let d = w.data;
        Some(match w.code {
            0 => ResetHistogram(input()?),
            1 => ResetTimer(input()?),
            2 => ResetScope,
            3 => ResetGenerator,
            4 => SetDecimation(d as u16),
            5 => SetNegator(input()?, d & 1 == 1),
            6 => SetPhaDelay(input()?, d as u16),
            7 => SetPhaMin(input()?, d as u16),
            8 => SetPhaMax(input()?, d as u16),
            9 => SetTimerPreset(input()?, d),
            10 => SetTimerMode(
                match w.chan {
                    2 => Timers::Both,
                    c => Timers::One(Input::from_chan(c)?),
                },
                d & 1 == 1,
            ),
            11 => ReadStatus,
            12 => ReadHistogram(input()?),
            13 => SetTriggerSource(input()?),
            14 => SetTriggerSlope(if d & 1 == 1 {
                Slope::Falling
            } else {
                Slope::Rising
            }),
            15 => SetTriggerMode(if d & 1 == 1 {
                TriggerMode::Auto
            } else {
                TriggerMode::Normal
            }),
            16 => SetTriggerLevel(d as u16 as i16),
            17 => SetPreSamples(d as u32),
            18 => SetTotalSamples(d as u32),
            19 => StartScope,
            20 => ReadTrace,
            21 if d <= 100 => SetGenFallTime(d as u32),
            22 if d <= 100 => SetGenRiseTime(d as u32),
            23 => SetGenLower(d as u16 as i16),
            24 => SetGenUpper(d as u16 as i16),
            25 => SetGenRate(d as u32),
            26 => SetGenDistribution(if d & 1 == 1 {
                Distribution::Poisson
            } else {
                Distribution::Uniform
            }),
            27 => ResetGenSpectrum,
            28 if (d >> 32) < HIST_BINS as u64 => SetGenBin {
                bin: (d >> 32) as u16,
                weight: d as u32,
            },
            29 => StartGenerator {
                keep_pulsing: d & 1 == 1,
            },
            30 => StopGenerator,
            31 => StartDaq(d as u32),
            _ => return None,
        })
    }

    /// Bytes the server sends back for this command, given the total samples per trace
    /// (`StartDaq` streams `n` traces of that size).
    pub fn reply_bytes(self, total_samples: u32) -> u64 {
        let trace = u64::from(total_samples) * SAMPLE_BYTES as u64;
        match self {
            Command::ReadStatus => STATUS_BYTES as u64,
            Command::ReadHistogram(_) => HIST_BYTES as u64,
            Command::ReadTrace => trace,
            Command::StartDaq(n) => trace * u64::from(n),
            _ => 0,
        }
    }
}

/// What went wrong reading a reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The reply is not of the size the command gives.
    #[error("{what} reply of {got} bytes, expected {want}")]
    Length {
        /// Which reply.
        what: &'static str,
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// A trace sample outside the 14-bit ADC range: not a trace (stream garbage).
    #[error("sample {index} {input} = {value} is outside the 14-bit ADC range -8192..=8191")]
    OutOfRange {
        /// Sample index in the trace.
        index: usize,
        /// Input.
        input: &'static str,
        /// Its value.
        value: i16,
    },
}

/// The 36-byte status (code 11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Timers: IN1, IN2, and the two unused PHA cells (125 MHz ticks).
    pub timers: [u64; 4],
    /// The oscilloscope word: bit 0 running, bits 23..1 the ring index of the trigger.
    pub scope: u32,
}

impl Status {
    /// True from arming (19) until the trace is recorded.
    pub fn running(&self) -> bool {
        self.scope & 1 == 1
    }
    /// Ring index of the trigger sample.
    pub fn trigger_index(&self) -> u32 {
        (self.scope >> 1) & 0x7F_FFFF
    }
    /// Timer of `input` in seconds.
    pub fn seconds(&self, input: Input) -> f64 {
        self.timers[input.chan() as usize] as f64 / TICKS_PER_SECOND
    }
    /// The 36 bytes on the wire.
    pub fn encode(&self) -> [u8; STATUS_BYTES] {
        let mut b = [0u8; STATUS_BYTES];
        for (i, t) in self.timers.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&t.to_le_bytes());
        }
        b[32..36].copy_from_slice(&self.scope.to_le_bytes());
        b
    }
    /// Reads a status reply; exactly 36 bytes.
    pub fn decode(b: &[u8]) -> Result<Status, ReplyError> {
        if b.len() != STATUS_BYTES {
            return Err(ReplyError::Length {
                what: "status",
                got: b.len(),
                want: STATUS_BYTES,
            });
        }
        let mut s = Status::default();
        for (i, t) in s.timers.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *t = u64::from_le_bytes(w);
        }
        s.scope = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
        Ok(s)
    }
}

/// Reads a histogram reply (exactly 16384 bytes) into `bins`.
pub fn decode_histogram(b: &[u8], bins: &mut [u32; HIST_BINS]) -> Result<(), ReplyError> {
    if b.len() != HIST_BYTES {
        return Err(ReplyError::Length {
            what: "histogram",
            got: b.len(),
            want: HIST_BYTES,
        });
    }
    for (v, c) in bins.iter_mut().zip(b.chunks_exact(4)) {
        *v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

/// Writes a histogram reply.
pub fn encode_histogram(bins: &[u32; HIST_BINS], out: &mut [u8; HIST_BYTES]) {
    for (c, v) in out.chunks_exact_mut(4).zip(bins) {
        c.copy_from_slice(&v.to_le_bytes());
    }
}

/// Sample `i` of a trace (IN1, IN2); `None` past its end.
pub fn sample(trace: &[u8], i: usize) -> Option<(i16, i16)> {
    let b = trace.get(i * SAMPLE_BYTES..i * SAMPLE_BYTES + SAMPLE_BYTES)?;
    Some((
        i16::from_le_bytes([b[0], b[1]]),
        i16::from_le_bytes([b[2], b[3]]),
    ))
}

/// Writes sample `i` of a trace; false past its end.
pub fn put_sample(trace: &mut [u8], i: usize, in1: i16, in2: i16) -> bool {
    let Some(b) = trace.get_mut(i * SAMPLE_BYTES..i * SAMPLE_BYTES + SAMPLE_BYTES) else {
        return false;
    };
    b[..2].copy_from_slice(&in1.to_le_bytes());
    b[2..].copy_from_slice(&in2.to_le_bytes());
    true
}

/// Checks a received trace: a whole number of samples, each in the 14-bit range. The wire
/// bytes are already the `{IN1: int16, IN2: int16}` records, so nothing is converted.
pub fn check_trace(trace: &[u8]) -> Result<(), ReplyError> {
    if !trace.len().is_multiple_of(SAMPLE_BYTES) {
        return Err(ReplyError::Length {
            what: "trace",
            got: trace.len(),
            want: trace.len() / SAMPLE_BYTES * SAMPLE_BYTES,
        });
    }
    for (index, c) in trace.chunks_exact(2).enumerate() {
        let value = i16::from_le_bytes([c[0], c[1]]);
        if !(ADC_MIN..=ADC_MAX).contains(&value) {
            return Err(ReplyError::OutOfRange {
                index: index / 2,
                input: if index % 2 == 0 { "IN1" } else { "IN2" },
                value,
            });
        }
    }
    Ok(())
}

/// Sample interval in seconds for decimation `n` (HARDWARE.md R.5: 8 ns × N, N < 4 → 8 ns).
pub fn sample_interval(decimation: u16) -> f64 {
    if decimation < 4 {
        8e-9
    } else {
        8e-9 * f64::from(decimation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// mimoCoRB2's `command()`: `struct.pack("<Q", code << 56 | number << 52 | (int(value) &
    /// 0xFFFFFFFFFFFFF))`, spelled out.
    fn m2(code: u64, number: u64, value: i64) -> [u8; 8] {
        (code << 56 | number << 52 | (value as u64 & 0xFFFFFFFFFFFFF)).to_le_bytes()
    }

    #[test]
    fn words_are_mimocorb2s_bytes() {
        assert_eq!(
            Command::SetDecimation(4).encode(),
            [4, 0, 0, 0, 0, 0, 0, 0x04]
        );
        assert_eq!(Command::SetDecimation(4).encode(), m2(4, 0, 4));
        assert_eq!(
            Command::SetNegator(Input::In2, true).encode(),
            [1, 0, 0, 0, 0, 0, 0x10, 0x05]
        );
        assert_eq!(Command::SetTriggerSource(Input::In2).encode(), m2(13, 1, 0));
        assert_eq!(
            Command::SetTriggerSlope(Slope::Falling).encode(),
            m2(14, 0, 1)
        );
        assert_eq!(
            Command::SetTriggerMode(TriggerMode::Auto).encode(),
            m2(15, 0, 1)
        );
        assert_eq!(Command::SetTriggerLevel(100).encode(), m2(16, 0, 100));
        // A negative level is 52-bit two's complement.
        assert_eq!(
            Command::SetTriggerLevel(-100).encode(),
            [0x9c, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10]
        );
        assert_eq!(Command::SetTriggerLevel(-100).encode(), m2(16, 0, -100));
        assert_eq!(Command::SetTotalSamples(1100).encode(), m2(18, 0, 1100));
        assert_eq!(Command::StartDaq(100).encode(), m2(31, 0, 100));
        assert_eq!(
            Command::SetGenBin {
                bin: 4095,
                weight: 7
            }
            .encode(),
            m2(28, 0, (4095 << 32) | 7)
        );
        assert_eq!(
            Command::SetTimerMode(Timers::Both, true).encode(),
            m2(10, 2, 1)
        );
        assert_eq!(Command::ReadStatus.encode(), [0, 0, 0, 0, 0, 0, 0, 11]);
    }

    #[test]
    fn the_server_ignores_what_it_does_not_know() {
        assert_eq!(Command::decode(m2(32, 0, 0)), None);
        assert_eq!(Command::decode(m2(255, 0, 0)), None);
        assert_eq!(Command::decode(m2(12, 2, 0)), None);
        assert_eq!(Command::decode(m2(10, 3, 1)), None);
        assert_eq!(Command::decode(m2(21, 0, 101)), None);
        assert_eq!(Command::decode(m2(28, 0, 4096 << 32)), None);
        assert_eq!(
            Command::decode(m2(16, 0, 0x1_8000)),
            Some(Command::SetTriggerLevel(i16::MIN))
        );
    }

    #[test]
    fn status_reads_bit_0_and_the_trigger_index() {
        let s = Status {
            timers: [125_000_000, 2, 3, 4],
            scope: (1234 << 1) | 1,
        };
        let b = s.encode();
        assert_eq!(&b[..8], &125_000_000u64.to_le_bytes());
        assert_eq!(&b[32..], &[0xa5, 0x09, 0, 0]);
        let d = Status::decode(&b).unwrap();
        assert!(d.running());
        assert_eq!(d.trigger_index(), 1234);
        assert_eq!(d.seconds(Input::In1), 1.0);
        assert!(Status::decode(&b[..35]).is_err());
    }

    #[test]
    fn traces_interleave_in1_low_in2_high() {
        // One LE uint32 word per sample: low int16 = IN1, high int16 = IN2.
        let word: u32 = (0xFFFEu32 << 16) | 5; // IN2 = -2, IN1 = 5
        let b = word.to_le_bytes();
        assert_eq!(sample(&b, 0), Some((5, -2)));
        assert_eq!(sample(&b, 1), None);
        let mut t = [0u8; 8];
        assert!(put_sample(&mut t, 1, -8192, 8191));
        assert!(!put_sample(&mut t, 2, 0, 0));
        assert_eq!(check_trace(&t), Ok(()));
        assert!(put_sample(&mut t, 0, 8192, 0));
        assert_eq!(
            check_trace(&t),
            Err(ReplyError::OutOfRange {
                index: 0,
                input: "IN1",
                value: 8192
            })
        );
        assert!(check_trace(&t[..7]).is_err());
    }

    #[test]
    fn sample_intervals() {
        assert_eq!(sample_interval(1), 8e-9);
        assert_eq!(sample_interval(0), 8e-9);
        assert_eq!(sample_interval(4), 32e-9);
        assert_eq!(sample_interval(64), 512e-9);
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![Just(Input::In1), Just(Input::In2)]
    }

    fn command() -> impl Strategy<Value = Command> {
        use Command::*;
        prop_oneof![
            input().prop_map(ResetHistogram),
            input().prop_map(ResetTimer),
            Just(ResetScope),
            Just(ResetGenerator),
            any::<u16>().prop_map(SetDecimation),
            (input(), any::<bool>()).prop_map(|(i, b)| SetNegator(i, b)),
            (input(), any::<u16>()).prop_map(|(i, v)| SetPhaDelay(i, v)),
            (input(), any::<u16>()).prop_map(|(i, v)| SetPhaMin(i, v)),
            (input(), any::<u16>()).prop_map(|(i, v)| SetPhaMax(i, v)),
            (input(), 0..=DATA_MASK).prop_map(|(i, v)| SetTimerPreset(i, v)),
            (
                prop_oneof![input().prop_map(Timers::One), Just(Timers::Both)],
                any::<bool>()
            )
                .prop_map(|(t, b)| SetTimerMode(t, b)),
            Just(ReadStatus),
            input().prop_map(ReadHistogram),
            input().prop_map(SetTriggerSource),
            prop_oneof![Just(Slope::Rising), Just(Slope::Falling)].prop_map(SetTriggerSlope),
            prop_oneof![Just(TriggerMode::Normal), Just(TriggerMode::Auto)]
                .prop_map(SetTriggerMode),
            any::<i16>().prop_map(SetTriggerLevel),
            any::<u32>().prop_map(SetPreSamples),
            any::<u32>().prop_map(SetTotalSamples),
            Just(StartScope),
            Just(ReadTrace),
            (0u32..=100).prop_map(SetGenFallTime),
            (0u32..=100).prop_map(SetGenRiseTime),
            any::<i16>().prop_map(SetGenLower),
            any::<i16>().prop_map(SetGenUpper),
            any::<u32>().prop_map(SetGenRate),
            prop_oneof![Just(Distribution::Uniform), Just(Distribution::Poisson)]
                .prop_map(SetGenDistribution),
            Just(ResetGenSpectrum),
            (0u16..4096, any::<u32>()).prop_map(|(bin, weight)| SetGenBin { bin, weight }),
            any::<bool>().prop_map(|keep_pulsing| StartGenerator { keep_pulsing }),
            Just(StopGenerator),
            any::<u32>().prop_map(StartDaq),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(c in command()) {
            prop_assert_eq!(Command::decode(c.encode()), Some(c));
        }

        #[test]
        fn any_word_decodes_without_panic(b in any::<[u8; 8]>()) {
            let w = Word::from_bytes(b);
            prop_assert_eq!(w.to_bytes(), b);
            if let Some(c) = Command::decode(b) {
                // What the server understood re-encodes to the same code and channel.
                let again = c.word();
                prop_assert_eq!(again.code, w.code);
                prop_assert_eq!(Command::from_word(again), Some(c));
            }
        }

        #[test]
        fn any_bytes_as_replies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..20000)) {
            let _ = Status::decode(&b);
            let mut bins = [0u32; HIST_BINS];
            let _ = decode_histogram(&b, &mut bins);
            let _ = check_trace(&b);
            let _ = sample(&b, b.len() / 4);
        }

        #[test]
        fn histograms_round_trip(v in proptest::collection::vec(any::<u32>(), HIST_BINS)) {
            let mut bins = [0u32; HIST_BINS];
            bins.copy_from_slice(&v);
            let mut b = [0u8; HIST_BYTES];
            encode_histogram(&bins, &mut b);
            let mut back = [0u32; HIST_BINS];
            decode_histogram(&b, &mut back).unwrap();
            prop_assert_eq!(back, bins);
        }
    }
}
