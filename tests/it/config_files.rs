//! Every shipped config file loads.

#[test]
fn every_config_file_in_config_dir_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let cfg = meetsync::config::load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.pairs.is_empty(), "{} has no pair", p.display());
            n += 1;
        }
    }
    assert!(n >= 2, "expected the example configs in {}", dir.display());
}
