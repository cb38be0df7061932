//! Centreon Broker 25.10 speaks BBDO 3.1: `broker.bbdo_version()` answers
//! `3.1.x`, which is BBDO 3 for everything that reads it (the custom-code
//! prelude gives custom code `self.bbdo_version` as the library does, the
//! first number). The Rust side never asks: it tells BBDO 2 from 3 by the
//! events' element ids.

use canopsis_harness::broker::{Output, OutputConfig};
use canopsis_harness::events::{Bbdo, Status};
use canopsis_harness::{deliver, text, Lab};

const T: i64 = 1_763_000_000;

/// Custom code that refuses every event unless it is told BBDO 3.
const CODE: &str = r#"local self = ...

self.sc_logger:notice("bbdo " .. tostring(self.bbdo_version))
if self.bbdo_version ~= 3 then
  return self, false
end
return self, true
"#;

/// The installed loader, run with `broker.bbdo_version()` answering
/// `version`, as the broker that calls `init` would.
fn loader_answering(lab: &Lab, version: &str) -> std::path::PathBuf {
    // Beside the loader: broker looks for modules next to the script.
    let wrapper = lab.script.with_file_name(format!("bbdo-{version}.lua"));
    std::fs::write(
        &wrapper,
        format!(
            "dofile({:?})\nlocal real_init = init\nfunction init(conf)\n  broker.bbdo_version = function() return {version:?} end\n  return real_init(conf)\nend\n",
            lab.script.display().to_string()
        ),
    )
    .unwrap();
    wrapper
}

#[test]
fn bbdo_3_1_is_bbdo_3_for_custom_code() {
    for version in ["3.1.0", "3.1.2", "3.0.1"] {
        let lab = Lab::new("bbdo-3-1");
        let code = lab.dir.join("custom.lua");
        std::fs::write(&code, CODE).unwrap();
        let mut out = Output::open(
            &OutputConfig {
                script: loader_answering(&lab, version),
                params: lab.params(&[("custom_code_file", text(&code.display().to_string()))]),
                bbdo: Bbdo::V3,
            },
            canopsis_harness::broker::CacheData::sample(),
        )
        .expect("output opens");
        let mux = deliver(
            &mut out,
            vec![Status::service(12, 34, 2, T).event(Bbdo::V3)],
        );
        assert_eq!(mux.acked, 1);
        out.close();
        let log = lab.log();
        assert!(log.contains("custom code: bbdo 3"), "{version}: {log}");
        assert_eq!(lab.posted().len(), 1, "{version}: sent, {log}");
    }
}
