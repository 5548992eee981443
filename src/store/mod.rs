//! Local calendar stores. Today: a vdir (one `.ics` file per event, one folder
//! per collection), the format khal and vdirsyncer read and write.
pub mod vdir;
