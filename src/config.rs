//! The one TOML file that sets pvtherm up (`config/pvtherm.toml` documents
//! every key). Each section is a struct owned by the module it configures;
//! this module only composes them, reads the file and checks what spans
//! sections. Unknown keys are rejected, and errors name the file, the line
//! and the key.

mod renamed_keys;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config_value::in_range;

use crate::analysis::AnalysisConfig;
use crate::control::ControlConfig;
use crate::homeassistant::HomeAssistantConfig;
use crate::messages::OutputConfig;
use crate::model::ModelConfig;
use crate::publish::{BrokerConfig, Identity, MqttConfig, OutboxConfig};
use crate::render::RenderOptions;
use crate::source::SourceConfig;
use crate::web::HttpConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Who this box is on the bus.
    pub(crate) device: DeviceConfig,
    /// Where frames come from.
    pub source: SourceConfig,
    /// Which models to run.
    pub model: ModelConfig,
    /// Temperatures, severity, tracking, position.
    pub analysis: AnalysisConfig,
    /// How frames flow from the source to the model.
    pub(crate) pipeline: PipelineConfig,
    /// What the daemon publishes besides detections, and how often.
    pub(crate) output: OutputConfig,
    /// How snapshots, `detect` overviews and thumbnails are drawn.
    pub render: RenderOptions,
    /// The MQTT broker to publish to.
    pub(crate) mqtt: MqttConfig,
    /// The durable on-disk queue of messages not yet acknowledged.
    pub(crate) outbox: OutboxConfig,
    /// An in-process broker (demo and tests; off by default).
    pub(crate) broker: BrokerConfig,
    /// Home Assistant MQTT discovery (off by default).
    pub(crate) homeassistant: HomeAssistantConfig,
    /// The control topics (off by default).
    pub(crate) control: ControlConfig,
    /// The web page and HTTP API (off by default).
    pub http: HttpConfig,
    /// Logging.
    pub logging: LoggingConfig,
    /// Settings the file writes in an old place, each with the new one: the
    /// daemon logs them once logging is up, `check-config` prints them.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[device]`: identity on the MQTT bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DeviceConfig {
    /// Device id: the second level of every topic. No `+`, `#` or `/`.
    pub(crate) id: String,
    /// First level of every topic.
    pub(crate) topic_prefix: String,
}

impl DeviceConfig {
    /// The topic rules are those of [`Identity::new`], which builds every
    /// topic the daemon publishes: what passes here is what the daemon uses.
    pub(crate) fn validate(&self) -> Result<()> {
        Identity::new(&self.topic_prefix, &self.id).map(|_| ())
    }
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            id: "pvtherm-1".into(),
            topic_prefix: "pvtherm".into(),
        }
    }
}

/// `[pipeline]`: how much of the camera's frame rate to spend CPU on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PipelineConfig {
    /// Run the model on every n-th captured frame (1 = every frame).
    pub(crate) detect_every_n: u32,
    /// Upper bound on inferences per second (0 = as fast as the box can).
    pub(crate) max_fps: f32,
    /// Log a one-line summary per processed frame at info level (the demo does;
    /// a field box usually does not).
    pub(crate) frame_summary: bool,
}

impl PipelineConfig {
    /// `detect_every_n` at least 1; `max_fps` 0 (no limit) or a rate whose
    /// period a clock can hold.
    pub(crate) fn validate(&self) -> Result<()> {
        in_range(
            "[pipeline] detect_every_n",
            self.detect_every_n,
            1..=10_000,
            " (1 = every frame)",
        )?;
        if self.max_fps != 0.0 {
            in_range(
                "[pipeline] max_fps",
                self.max_fps,
                0.01..=1000.0,
                " inferences per second (or 0 = no limit)",
            )?;
        }
        Ok(())
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            detect_every_n: 1,
            max_fps: 0.0,
            frame_summary: false,
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
}

impl LoggingConfig {
    /// A level the logger knows.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.level.parse::<log::LevelFilter>().is_err() {
            bail!(
                "[logging] level = {:?}: use error, warn, info, debug or trace",
                self.level
            );
        }
        Ok(())
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        // toml's error text carries the line, the column and the offending key.
        let mut config: Config = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        config.warnings = Self::old_style_warnings(text)?;
        config
            .move_old_render_table()
            .with_context(|| format!("{}: invalid configuration", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config
            .validate()
            .with_context(|| format!("{}: invalid configuration", path.display()))?;
        Ok(config)
    }

    /// What `text` (already known to parse) writes in an old spelling: renamed
    /// keys and durations as plain seconds, each with what to write instead.
    fn old_style_warnings(text: &str) -> Result<Vec<String>> {
        let file: toml::Table = toml::from_str(text)?;
        let defaults = toml::Table::try_from(Config::default())
            .context("the default configuration does not serialize")?;
        Ok(renamed_keys::old_style_warnings(&file, &defaults))
    }

    /// Reads `[analysis.render]`, where files written before `[render]`
    /// existed keep the picture settings, as `[render]`, with a warning.
    fn move_old_render_table(&mut self) -> Result<()> {
        let Some(old) = self.analysis.render.take() else {
            return Ok(());
        };
        if self.render != RenderOptions::default() {
            bail!("[analysis.render] and [render] are both set: [analysis.render] is the old name of [render]; move its keys into [render]");
        }
        self.render = toml::Value::Table(old)
            .try_into()
            .map_err(|e| anyhow::anyhow!("[analysis.render]: {}", e.to_string().trim_end()))?;
        self.warnings.push(
            "[analysis.render] is now [render]: rename the table (read as [render] until then)"
                .into(),
        );
        Ok(())
    }

    /// Makes relative file names relative to the config file's folder, so a
    /// config works whatever the current directory is.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        };
        fix(&mut self.model.detector);
        fix(&mut self.model.classifier);
        fix(&mut self.model.anomaly);
        fix(&mut self.model.fusion_rule);
        fix(&mut self.http.token_file);
        fix(&mut self.http.password_file);
        self.source.resolve_paths(base);
    }

    /// Checks what serde cannot: ranges, and that named files exist. The one
    /// check of a configuration: `check-config` and `run` both call it (through
    /// [`Config::parse`]) before anything starts, so they refuse the same
    /// files. One `validate` per section; errors name the key.
    ///
    /// Every section is checked, and the error lists each section's problem,
    /// so one run of `check-config` shows all of them.
    pub(crate) fn validate(&self) -> Result<()> {
        let results = [
            self.device.validate(),
            self.source.validate(),
            self.model.validate(),
            self.analysis.validate().context("[analysis]"),
            self.render.validate(),
            self.pipeline.validate(),
            self.output.validate(),
            self.mqtt.validate(),
            self.outbox.validate(),
            self.broker.validate(),
            self.homeassistant.validate(),
            self.control.validate(),
            self.http.validate(),
            self.logging.validate(),
        ];
        let problems: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| format!("{e:#}")))
            .collect();
        match problems.as_slice() {
            [] => Ok(()),
            [one] => bail!("{one}"),
            many => bail!("{} problems:\n  - {}", many.len(), many.join("\n  - ")),
        }
    }

    /// A few lines saying what this configuration will do.
    pub fn summary(&self) -> String {
        format!(
            "device {:?}, topics {}/{}/...\nmodel: {} / {} / {}, input {}x{}",
            self.device.id,
            self.device.topic_prefix,
            self.device.id,
            self.model.detector_source().label(),
            self.model.classifier_source().label(),
            match self.model.anomaly_views {
                0 => "no anomaly model".to_string(),
                n => format!("{} ({n} views)", self.model.anomaly_source().label()),
            },
            self.model.input_width,
            self.model.input_height,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn typo_names_the_key_and_line() {
        let err = Config::parse(
            "[device]\nid = \"a\"\ntopic_prefx = \"x\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("topic_prefx"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("t.toml"), "{msg}");
    }

    #[test]
    fn shipped_config_is_current_and_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let assembled: String = [
            "head",
            "source.v4l2",
            "source.replay",
            "model",
            "analysis",
            "render",
            "pipeline",
            "mqtt",
            "outbox",
            "broker",
            "homeassistant",
            "control",
            "http",
        ]
        .iter()
        .map(|s| std::fs::read_to_string(dir.join(format!("snippets/{s}.toml"))).unwrap())
        .collect();
        let shipped = std::fs::read_to_string(dir.join("pvtherm.toml")).unwrap();
        assert!(
            shipped == assembled,
            "config/pvtherm.toml is stale: run config/assemble.sh"
        );
        // Every documented key parses, with the documented defaults.
        let parsed = Config::parse(&shipped, &dir.join("pvtherm.toml")).unwrap();
        assert_eq!(parsed.device, DeviceConfig::default());
        assert_eq!(parsed.pipeline, PipelineConfig::default());
        assert_eq!(parsed.output, OutputConfig::default());
        assert_eq!(parsed.render, RenderOptions::default());
        assert_eq!(parsed.model, ModelConfig::default());
        assert!(
            parsed.warnings.is_empty(),
            "the shipped file uses old spellings: {:?}",
            parsed.warnings
        );
        // Every key of every section is documented (uncommented or as `# key =`).
        let defaults = toml::to_string(&Config::default()).unwrap();
        let mut table = "";
        for line in defaults.lines() {
            if line.starts_with('[') {
                table = line;
            }
            // class_floor is a map: its keys are anomaly classes, not settings.
            if !line.contains(" = ") || table.contains("class_floor") {
                continue;
            }
            let key = line.split(" = ").next().unwrap().trim();
            assert!(
                shipped.lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} ="))),
                "key {key} is not documented in config/pvtherm.toml"
            );
        }
    }

    #[test]
    fn single_table_snippets_show_the_defaults_and_every_key_parses() {
        use crate::config_value::test_support::check_documented_snippet;
        let snippet = |name: &str| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/snippets");
            std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap()
        };
        check_documented_snippet::<crate::source::v4l2::V4l2Config>(
            "source.v4l2",
            &snippet("source.v4l2"),
        );
        check_documented_snippet::<ModelConfig>("model", &snippet("model"));
        check_documented_snippet::<AnalysisConfig>("analysis", &snippet("analysis"));
        check_documented_snippet::<RenderOptions>("render", &snippet("render"));
    }

    #[test]
    fn old_duration_spellings_are_read_with_a_warning() {
        let old = Config::parse(
            "[output]\nsnapshot_interval_s = 0.5\nstats_interval_s = 2\n\
             [source.v4l2]\nstall_timeout = 3.0\n[mqtt]\nkeep_alive = 20\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(old.output.snapshot_interval, Duration::from_millis(500));
        assert_eq!(old.output.stats_interval, Duration::from_secs(2));
        assert_eq!(old.source.v4l2.stall_timeout, Duration::from_secs(3));
        assert_eq!(old.mqtt.keep_alive, Duration::from_secs(20));
        let expected = [
            "snapshot_interval = \"500ms\"",
            "stats_interval = \"2s\"",
            "stall_timeout = \"3s\"",
            "keep_alive = \"20s\"",
        ];
        assert_eq!(old.warnings.len(), expected.len(), "{:?}", old.warnings);
        for new in expected {
            assert!(
                old.warnings.iter().any(|w| w.contains(new)),
                "no warning suggests {new}: {:?}",
                old.warnings
            );
        }
        // Every renamed key is still read under its old name.
        for (table, old_key, new_key) in renamed_keys::RENAMED_KEYS {
            let text = format!("[{table}]\n{old_key} = 1\n");
            let parsed = Config::parse(&text, Path::new("t.toml"))
                .unwrap_or_else(|e| panic!("{table}.{old_key}: {e:#}"));
            assert!(
                parsed.warnings.iter().any(|w| w.contains(new_key)),
                "{:?}",
                parsed.warnings
            );
        }
        // Old and new spelling together is ambiguous.
        let both = "[output]\nstats_interval = \"1s\"\nstats_interval_s = 2\n";
        let err = format!(
            "{:#}",
            Config::parse(both, Path::new("t.toml")).unwrap_err()
        );
        assert!(err.contains("stats_interval"), "{err}");
    }

    #[test]
    fn values_that_would_fail_at_start_are_refused_naming_the_key() {
        for (text, key) in [
            (
                "[device]\ntopic_prefix = \"$SYS\"\n",
                "[device] topic_prefix",
            ),
            (
                "[device]\ntopic_prefix = \"a//b\"\n",
                "[device] topic_prefix",
            ),
            ("[device]\ntopic_prefix = \"a/\"\n", "[device] topic_prefix"),
            ("[device]\nid = \"$x\"\n", "[device] id"),
            (
                "[output]\nstats_interval = \"1ns\"\n",
                "[output] stats_interval",
            ),
            (
                "[output]\nstats_interval_s = 1e-30\n",
                "[output] stats_interval",
            ),
            (
                "[output]\nsnapshot_interval = \"100years\"\n",
                "[output] snapshot_interval",
            ),
            ("[pipeline]\nmax_fps = 1e-30\n", "[pipeline] max_fps"),
            ("[pipeline]\nmax_fps = nan\n", "[pipeline] max_fps"),
            (
                "[model]\ninput_width = 65536\ninput_height = 65536\n",
                "[model] input_width",
            ),
            (
                "[model]\nscore_threshold = 1.5\n",
                "[model] score_threshold",
            ),
            (
                "[model]\ndefect_threshold = nan\n",
                "[model] defect_threshold",
            ),
            ("[mqtt]\nkeep_alive = \"1day\"\n", "[mqtt] keep_alive"),
            (
                "[mqtt]\nmax_message_bytes = 18446744073709551615\n",
                "max_message_bytes",
            ),
            ("[mqtt]\nport = 0\n", "[mqtt] port"),
            ("[mqtt]\nclient_id = \"\"\n", "[mqtt] client_id"),
            ("[mqtt.tls]\nclient_cert = \"c.pem\"\n", "client_key"),
            ("[outbox]\nmax_bytes = 0\n", "[outbox] max_bytes"),
            (
                "[broker]\nmax_payload_bytes = 0\n",
                "[broker] max_payload_bytes",
            ),
            (
                "[source.v4l2]\nreopen_interval = \"100years\"\n",
                "[source.v4l2] reopen_interval",
            ),
            ("[source]\nmax_pixels = 0\n", "[source] max_pixels = 0"),
            ("[source]\nmax_pixels = 4799\n", "[source] max_pixels"),
            ("[source]\nmax_pixels = 268435457\n", "[source] max_pixels"),
            ("[source]\nmax_pixels = -1\n", "max_pixels"),
            ("[source]\nmax_pixels = nan\n", "max_pixels"),
            ("[source]\nmax_pixels = 3.2e7\n", "max_pixels"),
        ] {
            let err = Config::parse(text, Path::new("t.toml"))
                .map(|_| ())
                .unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(key), "{text:?} -> {msg}");
        }
    }

    #[test]
    fn old_render_table_is_read_as_render_with_a_warning() {
        let old = Config::parse(
            "[analysis.render]\npalette = \"grey\"\nline_width = 3\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(old.render.line_width, 3);
        assert_eq!(old.render.palette, crate::render::PaletteKind::Grey);
        assert!(
            old.warnings.iter().any(|w| w.contains("[render]")),
            "{:?}",
            old.warnings
        );
        let new = Config::parse(
            "[render]\npalette = \"grey\"\nline_width = 3\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(new.render, old.render);
        assert!(new.warnings.is_empty());
        // Both at once is ambiguous; a bad value in the old table names it.
        let both = "[render]\nline_width = 3\n[analysis.render]\nline_width = 4\n";
        let err = format!(
            "{:#}",
            Config::parse(both, Path::new("t.toml")).unwrap_err()
        );
        assert!(err.contains("both set"), "{err}");
        let bad = "[analysis.render]\nline_width = 0\n";
        let err = format!("{:#}", Config::parse(bad, Path::new("t.toml")).unwrap_err());
        assert!(err.contains("render.line_width"), "{err}");
        let typo = "[analysis.render]\nline_widht = 2\n";
        let err = format!(
            "{:#}",
            Config::parse(typo, Path::new("t.toml")).unwrap_err()
        );
        assert!(
            err.contains("[analysis.render]") && err.contains("line_widht"),
            "{err}"
        );
    }

    #[test]
    fn zero_detector_threads_are_rejected() {
        let err = Config::parse("[model]\nthreads = 0\n", Path::new("t.toml")).unwrap_err();
        assert!(
            format!("{err:#}").contains("[model] threads = 0"),
            "{err:#}"
        );
        let two = Config::parse("[model]\nthreads = 2\n", Path::new("t.toml"));
        if cfg!(feature = "threads") {
            assert_eq!(two.unwrap().model.threads, 2);
        } else {
            // No pool compiled in: check-config says so instead of the start-up failing.
            let err = format!("{:#}", two.unwrap_err());
            assert!(err.contains("`threads` cargo feature"), "{err}");
        }
    }

    #[test]
    fn bad_device_id_is_rejected() {
        let err = Config::parse("[device]\nid = \"a/b\"\n", Path::new("t.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("[device] id"));
    }

    #[test]
    fn missing_model_file_is_named() {
        let err = Config::parse(
            "[model]\ndetector = \"nope.onnx\"\n",
            Path::new("/etc/pvtherm/t.toml"),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/etc/pvtherm/nope.onnx"),
            "{err:#}"
        );
    }
}
