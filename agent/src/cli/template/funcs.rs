//! The functions templates call, and the render scope they read.
//!
//! gtmpl's functions are plain `fn(&[Value]) -> Result<Value, FuncError>` pointers, without a
//! context argument, so the data they read lives in a thread-local [`Scope`]: [`render`]
//! moves the known answers (the "brain") in, executes the template on this thread, and moves
//! them out again with the dependencies the template used and those still without an answer.
//! A data function whose dependency has no answer yet records it as missing and returns an
//! empty value, so the first render discovers every dependency (consul-template's approach).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use gtmpl::{Context, Func, FuncError, Template, Value};

use super::dep::Dependency;

/// The most distinct dependencies one render may use; past it the render fails (a template
/// that ranges over data calling `key` per item cannot grow without bound).
pub const DEPENDENCIES_MAX: usize = 1024;

/// Answers known so far, per dependency.
pub type Brain = BTreeMap<Dependency, Value>;

/// What one render saw.
#[derive(Debug, Default)]
pub struct Scope {
    brain: Brain,
    /// Every dependency the template called, answered or not.
    pub used: BTreeSet<Dependency>,
    /// Those without an answer yet.
    pub missing: BTreeSet<Dependency>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// The outcome of one render.
#[derive(Debug)]
pub struct Rendered {
    pub output: Result<String, String>,
    pub used: BTreeSet<Dependency>,
    pub missing: BTreeSet<Dependency>,
}

/// Renders `template` against `brain`, which is lent to the template functions and given back.
pub fn render(template: &Template, brain: &mut Brain) -> Rendered {
    let scope = Scope { brain: std::mem::take(brain), ..Scope::default() };
    SCOPE.with(|s| {
        let previous = s.borrow_mut().replace(scope);
        assert!(previous.is_none(), "renders do not nest");
    });
    // A panic inside gtmpl becomes this render's error; the scope is taken back either way.
    let execute = || template.render(&Context::empty()).map_err(|e| e.to_string());
    let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(execute))
        .unwrap_or_else(|_| Err("the template engine failed (panicked) on this template".to_string()));
    let scope = SCOPE.with(|s| s.borrow_mut().take()).expect("the scope set above");
    *brain = scope.brain;
    Rendered { output, used: scope.used, missing: scope.missing }
}

/// Every function a template may call besides gtmpl's built-ins.
pub fn all() -> Vec<(&'static str, Func)> {
    vec![
        ("service", service as Func),
        ("services", services as Func),
        ("key", key as Func),
        ("keyOrDefault", key_or_default as Func),
        ("ls", ls as Func),
        ("tree", tree as Func),
        ("nodes", nodes as Func),
        ("env", env as Func),
        ("join", join as Func),
        ("toJSON", to_json as Func),
        ("byTag", by_tag as Func),
        (super::ranges::VALUES_FN, range_values as Func),
        (super::ranges::KEYS_FN, range_keys as Func),
    ]
}

fn fail(msg: String) -> FuncError {
    FuncError::Generic(msg)
}

/// Records `dep` as used and returns its answer, or `None` (recorded as missing) while it has
/// none.
fn recall(dep: Dependency) -> Result<Option<Value>, FuncError> {
    SCOPE.with(|s| {
        let mut guard = s.borrow_mut();
        let scope = guard.as_mut().ok_or_else(|| fail("template data functions run only inside a render".into()))?;
        if !scope.used.contains(&dep) && scope.used.len() >= DEPENDENCIES_MAX {
            return Err(fail(format!("more than {DEPENDENCIES_MAX} distinct queries in one template ({dep})")));
        }
        scope.used.insert(dep.clone());
        match scope.brain.get(&dep) {
            Some(v) => Ok(Some(v.clone())),
            None => {
                scope.missing.insert(dep);
                Ok(None)
            }
        }
    })
}

fn string_arg(name: &str, args: &[Value], i: usize) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(fail(format!("{name}: argument {} must be a string, got {other}", i + 1))),
        None => Err(fail(format!("{name}: missing argument {}", i + 1))),
    }
}

fn arity(name: &str, args: &[Value], min: usize, max: usize) -> Result<(), FuncError> {
    if args.len() < min || args.len() > max {
        let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        return Err(fail(format!("{name}: wrong number of arguments, expected {want}, got {}", args.len())));
    }
    Ok(())
}

fn list_or_empty(v: Option<Value>) -> Value {
    v.unwrap_or_else(|| Value::Array(Vec::new()))
}

/// `service "[tag.]name[|filter]"` or `service "name" "filter"`: healthy instances.
fn service(args: &[Value]) -> Result<Value, FuncError> {
    arity("service", args, 1, 2)?;
    let mut query = string_arg("service", args, 0)?;
    if args.len() == 2 {
        query = format!("{query}|{}", string_arg("service", args, 1)?);
    }
    let dep = Dependency::service(&query).map_err(fail)?;
    Ok(list_or_empty(recall(dep)?))
}

/// `services`: every service of the catalog with its tags, by name.
fn services(args: &[Value]) -> Result<Value, FuncError> {
    arity("services", args, 0, 0)?;
    Ok(list_or_empty(recall(Dependency::Services)?))
}

/// `nodes`: every node of the catalog.
fn nodes(args: &[Value]) -> Result<Value, FuncError> {
    arity("nodes", args, 0, 0)?;
    Ok(list_or_empty(recall(Dependency::Nodes)?))
}

/// `key "k"`: the value, empty while the key is missing.
fn key(args: &[Value]) -> Result<Value, FuncError> {
    arity("key", args, 1, 1)?;
    let k = string_arg("key", args, 0)?;
    if k.is_empty() {
        return Ok(Value::from(""));
    }
    match recall(Dependency::Key(k))? {
        Some(Value::String(s)) => Ok(Value::String(s)),
        _ => Ok(Value::from("")),
    }
}

/// `keyOrDefault "k" "default"`: the default while the key is missing or empty.
fn key_or_default(args: &[Value]) -> Result<Value, FuncError> {
    arity("keyOrDefault", args, 2, 2)?;
    let (k, default) = (string_arg("keyOrDefault", args, 0)?, string_arg("keyOrDefault", args, 1)?);
    if k.is_empty() {
        return Ok(Value::String(default));
    }
    match recall(Dependency::Key(k))? {
        Some(Value::String(s)) if !s.is_empty() => Ok(Value::String(s)),
        _ => Ok(Value::String(default)),
    }
}

fn pairs(name: &str, args: &[Value], keep: fn(&str) -> bool) -> Result<Value, FuncError> {
    arity(name, args, 1, 1)?;
    let prefix = string_arg(name, args, 0)?;
    if prefix.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let Some(Value::Array(all)) = recall(Dependency::KeyPrefix(prefix))? else {
        return Ok(Value::Array(Vec::new()));
    };
    let relative_key = |p: &Value| match p {
        Value::Object(o) => match o.get("Key") {
            Some(Value::String(k)) => k.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    Ok(Value::Array(all.into_iter().filter(|p| keep(&relative_key(p))).collect()))
}

/// `ls "prefix"`: the pairs right under the prefix (no deeper keys, no folders).
fn ls(args: &[Value]) -> Result<Value, FuncError> {
    pairs("ls", args, |k| !k.is_empty() && !k.contains('/'))
}

/// `tree "prefix"`: every pair under the prefix, at any depth (no folders).
fn tree(args: &[Value]) -> Result<Value, FuncError> {
    pairs("tree", args, |k| !k.is_empty() && !k.ends_with('/'))
}

/// `env "VAR"`: the variable, empty when unset.
fn env(args: &[Value]) -> Result<Value, FuncError> {
    arity("env", args, 1, 1)?;
    Ok(Value::String(std::env::var(string_arg("env", args, 0)?).unwrap_or_default()))
}

/// `join "sep" list` (so `list | join ","` pipes).
fn join(args: &[Value]) -> Result<Value, FuncError> {
    arity("join", args, 2, 2)?;
    let sep = string_arg("join", args, 0)?;
    let items: Vec<String> = match &args[1] {
        Value::Array(a) => a.iter().map(ToString::to_string).collect(),
        Value::NoValue | Value::Nil => Vec::new(),
        other => return Err(fail(format!("join: the second argument must be a list, got {other}"))),
    };
    Ok(Value::String(items.join(&sep)))
}

/// `toJSON v`: compact JSON, map keys sorted (as Go's encoder writes maps).
fn to_json(args: &[Value]) -> Result<Value, FuncError> {
    arity("toJSON", args, 1, 1)?;
    let json = to_serde(&args[0]).map_err(|e| fail(format!("toJSON: {e}")))?;
    Ok(Value::String(json.to_string()))
}

fn to_serde(v: &Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    Ok(match v {
        Value::NoValue | Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::from(u)
            } else if let Some(i) = n.as_i64() {
                Json::from(i)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map(Json::Number).unwrap_or(Json::Null)
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(to_serde).collect::<Result<_, _>>()?),
        Value::Object(o) | Value::Map(o) => {
            let sorted: BTreeMap<&String, &Value> = o.iter().collect();
            let mut map = serde_json::Map::new();
            for (k, v) in sorted {
                map.insert(k.clone(), to_serde(v)?);
            }
            Json::Object(map)
        }
        Value::Function(_) => return Err("a function cannot be written as JSON".into()),
    })
}

/// `byTag list`: the services (or catalog entries) grouped by each of their tags; an entry
/// with two tags is in both groups.
fn by_tag(args: &[Value]) -> Result<Value, FuncError> {
    arity("byTag", args, 1, 1)?;
    let list = match &args[0] {
        Value::Array(a) => a,
        Value::NoValue | Value::Nil => return Ok(Value::Map(Default::default())),
        other => return Err(fail(format!("byTag: expected a list of services, got {other}"))),
    };
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in list {
        let tags = match item {
            Value::Object(o) | Value::Map(o) => o.get("Tags"),
            _ => None,
        };
        let Some(Value::Array(tags)) = tags else {
            return Err(fail("byTag: expected a list of services (entries with Tags)".into()));
        };
        for tag in tags {
            groups.entry(tag.to_string()).or_default().push(item.clone());
        }
    }
    Ok(Value::Map(groups.into_iter().map(|(k, v)| (k, Value::Array(v))).collect()))
}

/// A map's entries sorted by key; a list as it is; nothing for an empty value.
fn sorted_entries(name: &str, args: &[Value]) -> Result<Vec<(Value, Value)>, FuncError> {
    arity(name, args, 1, 1)?;
    match &args[0] {
        Value::Array(a) => Ok(a.iter().enumerate().map(|(i, v)| (Value::from(i), v.clone())).collect()),
        Value::Object(m) | Value::Map(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            Ok(sorted.into_iter().map(|(k, v)| (Value::String(k.clone()), v.clone())).collect())
        }
        Value::NoValue | Value::Nil => Ok(Vec::new()),
        other => Err(fail(format!("range can't iterate over {other}"))),
    }
}

/// The values `range` visits, in Go's order (map keys sorted).
fn range_values(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(sorted_entries(super::ranges::VALUES_FN, args)?.into_iter().map(|(_, v)| v).collect()))
}

/// The keys `range` binds, in the same order as [`range_values`].
fn range_keys(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Array(sorted_entries(super::ranges::KEYS_FN, args)?.into_iter().map(|(k, _)| k).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Template {
        let mut t = Template::with_name("test");
        t.add_funcs(&all());
        t.parse(super::super::ranges::sort_map_ranges(text)).unwrap_or_else(|e| panic!("{text}: {e}"));
        t
    }

    fn service_entry(node: &str, port: u64, tags: &[&str]) -> Value {
        Value::Object(
            [
                ("Node".to_string(), Value::from(node)),
                ("Port".to_string(), Value::from(port)),
                ("Tags".to_string(), Value::Array(tags.iter().map(|t| Value::from(*t)).collect())),
            ]
            .into_iter()
            .collect(),
        )
    }

    #[test]
    fn the_first_render_discovers_each_dependency_once_however_often_it_is_used() {
        let t = parse(
            r#"{{range service "web"}}{{.Node}}{{end}}{{service "web" | len}}{{key "a"}}{{ls "app"}}{{tree "app/"}}{{tree "app"}}{{keyOrDefault "a" "x"}}"#,
        );
        let mut brain = Brain::new();

        let r = render(&t, &mut brain);

        assert!(r.output.is_ok(), "{:?}", r.output);
        let want: BTreeSet<Dependency> = [
            Dependency::service("web").unwrap(),
            Dependency::Key("a".into()),
            Dependency::KeyPrefix("app".into()),
            Dependency::KeyPrefix("app/".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(r.used, want, "four distinct queries");
        assert_eq!(r.missing, want, "none answered yet");
    }

    #[test]
    fn two_templates_share_the_dependencies_they_both_use() {
        let a = parse(r#"{{range service "web"}}{{.Node}}{{end}}{{key "k"}}"#);
        let b = parse(r#"{{range service "web"}}{{.Port}}{{end}}{{range service "web|any"}}{{end}}"#);
        let mut brain = Brain::new();

        let mut all = BTreeSet::new();
        for t in [&a, &b] {
            all.extend(render(t, &mut brain).used);
        }

        assert_eq!(all.len(), 3, "service web, service web|any, key k: {all:?}");
    }

    #[test]
    fn answers_reach_the_template_and_missing_ones_are_empty() {
        let t = parse(
            "{{range service \"web\"}}{{.Node}}:{{.Port}} {{end}}|{{key \"k\"}}|{{keyOrDefault \"gone\" \"dflt\"}}",
        );
        let mut brain = Brain::new();
        brain.insert(
            Dependency::service("web").unwrap(),
            Value::Array(vec![service_entry("n1", 80, &[]), service_entry("n2", 81, &[])]),
        );
        brain.insert(Dependency::Key("k".into()), Value::from("v"));
        brain.insert(Dependency::Key("gone".into()), Value::Nil);

        let r = render(&t, &mut brain);

        assert_eq!(r.output.unwrap(), "n1:80 n2:81 |v|dflt");
        assert!(r.missing.is_empty(), "{:?}", r.missing);
        assert_eq!(brain.len(), 3, "the brain is given back");
    }

    #[test]
    fn by_tag_groups_and_ranges_in_tag_order() {
        let t = parse(r#"{{range $tag, $s := service "web" | byTag}}{{$tag}}={{range $s}}{{.Node}},{{end}};{{end}}"#);
        let mut brain = Brain::new();
        let list = vec![
            service_entry("n1", 80, &["zeta", "alpha"]),
            service_entry("n2", 80, &["mid"]),
            service_entry("n3", 80, &["alpha"]),
        ];
        brain.insert(Dependency::service("web").unwrap(), Value::Array(list));

        // Many renders: a HashMap's order would differ between them.
        let outputs: BTreeSet<String> = (0..20).map(|_| render(&t, &mut brain).output.unwrap()).collect();

        assert_eq!(outputs.into_iter().collect::<Vec<_>>(), ["alpha=n1,n3,;mid=n2,;zeta=n1,;"]);
    }

    #[test]
    fn join_and_to_json() {
        let t = parse(
            r#"{{"x" | printf "%s"}}{{range service "web"}}{{.Tags | join ","}}{{end}} {{service "web" | toJSON}}"#,
        );
        let mut brain = Brain::new();
        brain.insert(Dependency::service("web").unwrap(), Value::Array(vec![service_entry("n1", 80, &["a", "b"])]));

        let out = render(&t, &mut brain).output.unwrap();

        assert_eq!(out, r#"xa,b [{"Node":"n1","Port":80,"Tags":["a","b"]}]"#);
    }

    #[test]
    fn bad_arguments_are_errors_that_name_the_function() {
        for (text, want) in [
            (r#"{{service "web@dc2"}}"#, "not supported"),
            (r#"{{key 1}}"#, "key: argument 1 must be a string"),
            (r#"{{keyOrDefault "a"}}"#, "keyOrDefault: wrong number of arguments"),
            (r#"{{byTag "x"}}"#, "byTag"),
        ] {
            let err = render(&parse(text), &mut Brain::new()).output.unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
