//! `legate template`: renders files from Go-syntax templates (via the `gtmpl` crate) with the
//! cluster's data, and renders them again whenever that data changes, like consul-template.
//!
//! The loop:
//!
//! 1. every template is rendered against the answers known so far (the "brain"); a data
//!    function without an answer records its dependency as missing and returns an empty value
//!    ([`funcs`]);
//! 2. each dependency used and not yet followed gets one watcher thread running a blocking
//!    query ([`watch`]), shared by every template and call that asks the same thing;
//!    dependencies no longer used are dropped;
//! 3. a template whose dependencies all have answers is written (or printed with `-dry`) if
//!    its output differs from what the destination holds, and its command runs;
//! 4. the loop waits for an answer that changes the brain (then for quiet, per `-wait`) and
//!    renders again. `-once` exits after every template was written once.
//!
//! Go ranges over maps in key order, gtmpl in hash order; [`ranges`] rewrites `range` actions
//! so that output does not change from one render to the next with the same data.

mod dep;
mod funcs;
mod output;
mod position;
mod ranges;
mod spec;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use gtmpl::Template;

use super::{client_options, parse, Client};
use dep::Dependency;
use funcs::Brain;
use spec::{TemplateSpec, Wait};
use watch::{Event, Watcher};

const USAGE: &str = "Usage: legate template [options]

  Renders templates (Go text/template syntax, as consul-template) from the cluster's
  services, nodes and key/value data, and renders them again when that data changes.

  -template \"in.ctmpl:out.cfg[:command]\" may be given several times; the command runs
  (with sh -c) after out.cfg changed. Functions: service, services, key, keyOrDefault, ls,
  tree, nodes, env, join, toJSON, byTag, and Go's built-ins (range, if, printf, len, index...).";

/// How the command was asked to run.
struct Settings {
    dry: bool,
    once: bool,
    wait: Wait,
}

/// One `-template`: its parsed text and what was last written or printed.
struct Target {
    spec: TemplateSpec,
    template: Template,
    /// What the destination holds (read at start) or what was last printed (`-dry`).
    last: Option<String>,
    /// Whether it was written (or found up to date) at least once.
    rendered: bool,
}

pub fn run(args: &[String]) -> i32 {
    let mut o = client_options();
    o.optmulti("", "template", "A template to render: \"in.ctmpl:out.cfg[:command]\" (repeatable).", "SPEC");
    o.optflag("", "dry", "Print each render to standard output instead of writing files; run no commands.");
    o.optflag("", "once", "Render every template once, then exit.");
    o.optopt(
        "",
        "wait",
        "After a change, wait for this long without another (min), at most max: \"min[:max]\".",
        "MIN:MAX",
    );
    let (m, client) = match parse(&o, args, USAGE) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if let Some(extra) = m.free.first() {
        return fail(&format!("unexpected argument {extra:?} (flags start with -)"));
    }
    let specs = m.opt_strs("template");
    if specs.is_empty() {
        return fail("at least one -template \"in.ctmpl:out.cfg[:command]\" is required");
    }
    let wait = match m.opt_str("wait").map(|w| Wait::parse(&w)).transpose() {
        Ok(w) => w.unwrap_or(Wait::NONE),
        Err(e) => return fail(&e),
    };
    let settings = Settings { dry: m.opt_present("dry"), once: m.opt_present("once"), wait };
    let mut targets = Vec::with_capacity(specs.len());
    for text in &specs {
        match load(text, settings.dry) {
            Ok(t) => targets.push(t),
            Err(e) => return fail(&e),
        }
    }
    let (events_tx, events_rx) = mpsc::channel();
    let mut runner = Runner {
        client,
        settings,
        targets,
        brain: Brain::new(),
        watchers: BTreeMap::new(),
        generation: 0,
        events_tx,
        events_rx,
        complete_once: false,
    };
    match runner.run() {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> i32 {
    eprintln!("Error: {msg}");
    1
}

/// Reads and parses one `-template`'s file.
fn load(text: &str, dry: bool) -> Result<Target, String> {
    let spec = TemplateSpec::parse(text)?;
    let source = std::fs::read_to_string(&spec.source)
        .map_err(|e| format!("reading template {}: {e}", spec.source.display()))?;
    let template = parse_template(&spec.source.display().to_string(), &source)?;
    let last = if dry { None } else { output::current(&spec.destination) };
    Ok(Target { spec, template, last, rendered: false })
}

/// Parses a template's text. The user's text is checked first, so errors point at what they
/// wrote (see [`position`]); then the text with `range` rewritten (see [`ranges`]) is what runs.
fn parse_template(name: &str, text: &str) -> Result<Template, String> {
    let new = || {
        let mut t = Template::with_name(name);
        t.add_funcs(&funcs::all());
        t
    };
    let plain = position::parse(name, text, &new).map_err(|e| format!("parsing template {e}"))?;
    let mut sorted = new();
    match sorted.parse(ranges::sort_map_ranges(text)) {
        Ok(()) => Ok(sorted),
        // The rewrite did not understand this text, which parses as written: run it as written.
        Err(_) => Ok(plain),
    }
}

struct Runner {
    client: Client,
    settings: Settings,
    targets: Vec<Target>,
    brain: Brain,
    watchers: BTreeMap<Dependency, Watcher>,
    generation: u64,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    /// Whether every template has been complete once (from then on `-wait` applies).
    complete_once: bool,
}

impl Runner {
    fn run(&mut self) -> Result<(), String> {
        loop {
            let complete = self.render_all()?;
            if complete {
                self.complete_once = true;
                if self.settings.once {
                    return Ok(());
                }
            }
            self.wait_for_change();
        }
    }

    /// Renders every template; writes those with all their data; follows what they use.
    /// Returns whether every template is complete.
    fn render_all(&mut self) -> Result<bool, String> {
        let mut used = BTreeSet::new();
        let mut complete = true;
        let mut commands: Vec<String> = Vec::new();
        for target in &mut self.targets {
            let rendered = funcs::render(&target.template, &mut self.brain);
            used.extend(rendered.used.iter().cloned());
            let text = match rendered.output {
                // Some data still missing: an error may come from the empty stand-ins.
                _ if !rendered.missing.is_empty() => {
                    complete = false;
                    continue;
                }
                Ok(text) => text,
                Err(e) => return Err(format!("rendering {}: {e}", target.spec.source.display())),
            };
            let changed = target.last.as_deref() != Some(text.as_str());
            if changed {
                if self.settings.dry {
                    output::print_dry(&target.spec.destination, &text)?;
                } else {
                    output::write_atomic(&target.spec.destination, &text)?;
                    if let Some(c) = &target.spec.command {
                        if !commands.contains(c) {
                            commands.push(c.clone());
                        }
                    }
                }
                target.last = Some(text);
            }
            target.rendered = true;
        }
        self.follow(used);
        for c in commands {
            if let Err(e) = output::run_command(&c) {
                eprintln!("legate template: {e}");
            }
        }
        Ok(complete && self.targets.iter().all(|t| t.rendered))
    }

    /// Starts a watcher for each newly used dependency and drops those no longer used.
    fn follow(&mut self, used: BTreeSet<Dependency>) {
        self.watchers.retain(|dep, _| used.contains(dep));
        self.brain.retain(|dep, _| used.contains(dep));
        for dep in used {
            if self.watchers.contains_key(&dep) {
                continue;
            }
            self.generation += 1;
            let watcher = Watcher::spawn(self.client.clone(), dep.clone(), self.generation, self.events_tx.clone());
            self.watchers.insert(dep, watcher);
        }
    }

    /// Applies one watcher report; returns whether the brain changed.
    fn apply(&mut self, event: Event) -> bool {
        let current = self.watchers.get(&event.dep).is_some_and(|w| w.generation == event.generation);
        if !current {
            return false; // From a watcher stopped since.
        }
        match event.result {
            Ok(value) => {
                if self.brain.get(&event.dep) == Some(&value) {
                    return false;
                }
                self.brain.insert(event.dep, value);
                true
            }
            Err(e) => {
                eprintln!("legate template: {}: {e} (retrying)", event.dep);
                false
            }
        }
    }

    /// Blocks until the data changed; once every template was complete, also waits for quiet
    /// as `-wait` asks.
    fn wait_for_change(&mut self) {
        loop {
            // `self.events_tx` is held, so the channel never disconnects.
            let Ok(event) = self.events_rx.recv() else { return };
            if self.apply(event) {
                break;
            }
        }
        let wait = self.settings.wait;
        if !self.complete_once || wait.is_none() {
            // Take what is already queued, to render once for a burst.
            while let Ok(event) = self.events_rx.try_recv() {
                self.apply(event);
            }
            return;
        }
        let first = Instant::now();
        let mut last = first;
        loop {
            let deadline = (last + wait.min).min(first + wait.max);
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.events_rx.recv_timeout(deadline - now) {
                Ok(event) => {
                    if self.apply(event) {
                        last = Instant::now();
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gtmpl::Value;

    use super::*;

    fn runner(wait: Wait, targets: Vec<Target>) -> Runner {
        // Nothing listens on port 1: watchers only report errors, which change nothing.
        let client = Client::from_flags(Some("127.0.0.1:1".into()), None, None, false);
        let (events_tx, events_rx) = mpsc::channel();
        Runner {
            client,
            settings: Settings { dry: true, once: false, wait },
            targets,
            brain: Brain::new(),
            watchers: BTreeMap::new(),
            generation: 0,
            events_tx,
            events_rx,
            complete_once: false,
        }
    }

    fn target(text: &str) -> Target {
        let spec = TemplateSpec::parse("in.ctmpl:out.cfg").unwrap();
        Target { spec, template: parse_template("in.ctmpl", text).unwrap(), last: None, rendered: false }
    }

    #[test]
    fn one_watcher_serves_every_use_of_a_dependency_across_templates() {
        let mut runner = runner(
            Wait::NONE,
            vec![
                target(r#"{{range service "web"}}{{.Node}}{{end}}{{range service "web"}}{{end}}{{key "k"}}"#),
                target(r#"{{service "web" | len}}{{ls "app"}}{{tree "app"}}{{keyOrDefault "k" "d"}}"#),
            ],
        );

        let complete = runner.render_all().unwrap();

        assert!(!complete, "no data yet");
        let followed: Vec<String> = runner.watchers.keys().map(ToString::to_string).collect();
        assert_eq!(followed, [r#"service "web""#, r#"key "k""#, r#"tree "app""#]);
        assert!(runner.targets.iter().all(|t| t.last.is_none()), "nothing printed before the data came");

        // A second pass starts no new watcher.
        runner.render_all().unwrap();
        assert_eq!(runner.generation, 3);
    }

    #[test]
    fn with_wait_a_burst_of_changes_is_applied_before_the_next_render() {
        let wait = Wait { min: Duration::from_secs(2), max: Duration::from_secs(20) };
        let mut runner = runner(wait, vec![target(r#"{{key "k"}}"#)]);
        runner.render_all().unwrap();
        runner.complete_once = true;
        let dep = Dependency::Key("k".into());
        let generation = runner.watchers[&dep].generation;
        let tx = runner.events_tx.clone();
        let burst = std::thread::spawn(move || {
            for v in ["a", "b", "c", "d"] {
                let event = Event { dep: Dependency::Key("k".into()), generation, result: Ok(Value::from(v)) };
                tx.send(event).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });

        runner.wait_for_change();

        burst.join().unwrap();
        assert_eq!(runner.brain.get(&dep), Some(&Value::from("d")), "the whole burst, not its first change");
    }
}
