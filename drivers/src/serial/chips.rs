//! The USB-serial chips detectors sit behind: their USB ids, what a scan says about a port
//! with one (always "probe needed": one chip serves many detectors) and the udev rule that
//! opens it to the user and names it under `/dev/daq/`. Sources in HARDWARE.md B.1, B.3,
//! C.1 and D.
//!
//! A chip is not a family: each serial family lists the chips it is most likely behind in
//! its [`FamilyInfo`](crate::families::FamilyInfo), and [`CHIPS`] orders their udev rules.
//! Pure data, no I/O.

/// One USB-serial chip (or a vendor's boards).
#[derive(Debug)]
pub struct Chip {
    /// USB vendor ids that match (one for a chip, several for a board maker).
    pub vendors: &'static [u16],
    /// The product id, or `None` for every product of the vendors.
    pub product: Option<u16>,
    /// What the scan says about a port behind it.
    pub says: &'static str,
    /// The stable name udev makes: `/dev/daq/<link>-<tty number>`.
    pub link: &'static str,
    /// The comment above its udev rule: what it is and where that is written down.
    pub comment: &'static str,
}

impl Chip {
    /// Whether a device with these USB ids is this chip.
    pub fn matches(&self, vendor: u16, product: u16) -> bool {
        self.vendors.contains(&vendor) && self.product.is_none_or(|p| p == product)
    }

    /// Its udev paragraph: the comment and one rule line, no trailing newline.
    pub fn udev_rule(&self) -> String {
        let vendors: Vec<String> = self.vendors.iter().map(|v| format!("{v:04x}")).collect();
        let product = self
            .product
            .map(|p| format!(", ATTRS{{idProduct}}==\"{p:04x}\""))
            .unwrap_or_default();
        format!(
            "{}\nSUBSYSTEM==\"tty\", ATTRS{{idVendor}}==\"{}\"{product}, SYMLINK+=\"daq/{}-%n\", \
             ENV{{ID_MM_DEVICE_IGNORE}}=\"1\", TAG+=\"uaccess\", GROUP=\"dialout\", MODE=\"0660\"",
            self.comment.trim_end(),
            vendors.join("|"),
            self.link
        )
    }
}

/// WCH CH340: GQ GMC counters (pygmc README); also CosmicWatch v2 Nano clones.
pub const CH340: Chip = Chip {
    vendors: &[0x1a86],
    product: Some(0x7523),
    says: "CH340 (1a86:7523): GQ GMC counter or Nano clone - probe needed",
    link: "geiger",
    comment: "\
# WCH CH340 1a86:7523: the USB-serial chip of GQ GMC counters (pygmc README, HARDWARE.md B.1)
# and of Arduino Nano clones in CosmicWatch v2 (HARDWARE.md C.1). No serial number, so the name
# follows the tty number. Ubuntu's brltty also claims 1a86:7523: see udev/README.md.",
};

/// FTDI FT232R: original Arduino Nano (CosmicWatch v2) and many kits.
pub const FT232R: Chip = Chip {
    vendors: &[0x0403],
    product: Some(0x6001),
    says: "FTDI (0403:6001): CosmicWatch v2 or Arduino-style counter - probe needed",
    link: "counter-ftdi",
    comment: "\
# FTDI FT232R 0403:6001: original Arduino Nano (CosmicWatch v2, HARDWARE.md C.1) and
# Arduino-style counters.",
};

/// Silicon Labs CP210x: ESP32 boards (GC10next-style counters).
pub const CP210X: Chip = Chip {
    vendors: &[0x10c4],
    product: Some(0xea60),
    says: "CP210x (10c4:ea60): line-output counter - probe needed",
    link: "counter-cp210x",
    comment: "\
# Silicon Labs CP210x 10c4:ea60: ESP32 boards printing GC10-style CPM lines (HARDWARE.md B.3).",
};

/// Raspberry Pi RP2040 USB CDC: CosmicWatch v3X.
pub const RP2040: Chip = Chip {
    vendors: &[0x2e8a],
    product: None,
    says: "RP2040 CDC (2e8a): CosmicWatch v3X - probe needed",
    link: "cosmicwatch",
    comment: "\
# Raspberry Pi RP2040 USB CDC 2e8a:*: CosmicWatch v3X (HARDWARE.md C.1, baud ignored).",
};

/// Arduino SA / Arduino LLC boards.
pub const ARDUINO: Chip = Chip {
    vendors: &[0x2341, 0x2a03],
    product: None,
    says: "Arduino: Arduino-style counter - probe needed",
    link: "arduino",
    comment: "\
# Arduino boards (Arduino LLC 2341:*, Arduino SRL 2a03:*): Arduino-style counters (HARDWARE.md B.3).",
};

/// Every chip, in the order of their udev rules.
pub const CHIPS: &[&Chip] = &[&CH340, &FT232R, &CP210X, &RP2040, &ARDUINO];
