//! The Arduino platform and library specifications, as arduino-cli implements them:
//! installed platforms and their boards (`platform`), build properties and recipe
//! expansion (`properties`), `runtime.tools.*` (`runtime_tools`), the compiler a
//! platform names (`toolchain`), libraries and their priority rules (`library`), and
//! sketches with their merged `.ino` and prototypes (`sketch`, `prototypes`).

pub mod library;
pub mod platform;
pub mod properties;
pub mod prototypes;
pub mod runtime_tools;
pub mod sketch;
pub mod toolchain;
