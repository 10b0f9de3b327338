//! `spin.toml` checked strictly: the parts of Spin's manifest v2 schema it
//! uses, with unknown keys refused; Spin's own rules on names, routes,
//! variables and templates; every referenced file present after the build
//! (`make edge`, which `make test` runs first); outbound hosts granted
//! through the `allowed_host_*` variables, whose defaults allow the default
//! upstreams; secrets marked secret.

use levee_edge::config::parse_upstreams;
use levee_tests::edge::{imports_of, workspace};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    spin_manifest_version: u32,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<String, Variable>,
    trigger: Triggers,
    component: BTreeMap<String, Component>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Application {
    name: String,
    version: Option<String>,
    description: Option<String>,
    authors: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Variable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Triggers {
    http: Vec<HttpTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTrigger {
    route: String,
    component: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Component {
    description: Option<String>,
    source: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    build: Option<Build>,
    #[serde(default)]
    dependencies: BTreeMap<String, Dependency>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Build {
    command: String,
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Dependency {
    path: String,
}

fn manifest() -> Manifest {
    let path = workspace().join("spin.toml");
    let text = std::fs::read_to_string(&path).expect("spin.toml exists");
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn is_snake(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_kebab(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[test]
fn the_manifest_is_strict_v2_and_consistent() {
    let m = manifest();
    assert_eq!(m.spin_manifest_version, 2);
    assert!(is_kebab(&m.application.name), "application name");
    for (name, v) in &m.variables {
        assert!(is_snake(name), "variable `{name}` must be lower snake case");
        assert!(
            v.default.is_some() != v.required,
            "variable `{name}` needs exactly one of `default` and `required`"
        );
    }
    let routes: BTreeSet<&str> = m.trigger.http.iter().map(|t| t.route.as_str()).collect();
    assert_eq!(routes.len(), m.trigger.http.len(), "routes are unique");
    for t in &m.trigger.http {
        assert!(t.route.starts_with('/'), "route {}", t.route);
        assert!(
            m.component.contains_key(&t.component),
            "trigger names `{}`",
            t.component
        );
    }
    let makefile = std::fs::read_to_string(workspace().join("Makefile")).unwrap();
    for (id, c) in &m.component {
        assert!(is_kebab(id), "component id `{id}` must be kebab case");
        for (name, value) in &c.variables {
            assert!(is_snake(name), "{id}: variable `{name}`");
            if let Some(inner) = value.strip_prefix("{{").and_then(|v| v.strip_suffix("}}")) {
                let var = inner.trim();
                assert!(
                    m.variables.contains_key(var),
                    "{id}: `{name}` uses undeclared `{var}`"
                );
            }
        }
        let build = c
            .build
            .as_ref()
            .expect("every component says how it is built");
        let target = build.command.strip_prefix("make ").expect("built by make");
        assert!(
            makefile.contains(&format!("\n{target}:")),
            "no make target `{target}`"
        );
        for dep in c.dependencies.keys() {
            assert!(
                dep.split_once(':')
                    .is_some_and(|(ns, rest)| is_kebab(ns) && rest.contains('@')),
                "{id}: dependency name `{dep}` is not `ns:pkg[/iface]@version`"
            );
        }
    }
    let used: BTreeSet<String> = m
        .component
        .values()
        .flat_map(|c| templated(c.variables.values().chain(&c.allowed_outbound_hosts)))
        .collect();
    let declared: BTreeSet<String> = m.variables.keys().cloned().collect();
    assert_eq!(
        used, declared,
        "every variable is used, and only declared ones"
    );
}

#[test]
fn secrets_are_secret_variables_with_no_value_in_the_file() {
    let m = manifest();
    for name in ["api_key", "access_token"] {
        let v = &m.variables[name];
        assert!(v.secret, "`{name}` must be `secret = true`");
        assert_eq!(
            v.default.as_deref().unwrap_or(""),
            "",
            "`{name}` has a value in the file"
        );
    }
}

#[test]
fn every_referenced_file_exists_after_the_build() {
    let m = manifest();
    let root = workspace();
    for (id, c) in &m.component {
        let source = root.join(&c.source);
        assert!(
            source.is_file(),
            "{id}: {} is missing: run `make edge`",
            source.display()
        );
        for (name, dep) in &c.dependencies {
            let path = root.join(&dep.path);
            assert!(
                path.is_file(),
                "{id}: dependency `{name}`: {} is missing",
                path.display()
            );
            assert_eq!(
                imports_of(&path),
                Vec::<String>::new(),
                "a policy imports nothing"
            );
        }
        let wants_policy = imports_of(&source)
            .iter()
            .any(|i| i.starts_with("levee:policy/"));
        assert_eq!(
            wants_policy,
            !c.dependencies.is_empty(),
            "{id}: the policy is either composed in or supplied as a dependency"
        );
    }
}

/// The variables in `{{ name }}` templates.
fn templated<'a>(values: impl IntoIterator<Item = &'a String>) -> impl Iterator<Item = String> {
    values
        .into_iter()
        .filter_map(|v| v.strip_prefix("{{").and_then(|v| v.strip_suffix("}}")))
        .map(|v| v.trim().to_owned())
}

#[test]
fn outbound_hosts_are_the_allowed_host_variables_and_cover_the_default_upstreams() {
    let m = manifest();
    let default = m.variables["upstreams"]
        .default
        .as_deref()
        .expect("upstreams has a default");
    let upstreams = parse_upstreams(default).expect("the default upstream list is valid");
    let origins: BTreeSet<String> = upstreams.iter().map(|u| u.origin()).collect();
    let slots: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| format!("allowed_host_{s}"))
        .collect();
    let allowed_by_default: BTreeSet<String> = slots
        .iter()
        .filter_map(|s| m.variables[s].default.clone())
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(
        allowed_by_default, origins,
        "the defaults allow the default upstreams"
    );
    let kv = m.variables["kv_store"].default.clone().unwrap();
    for (id, c) in &m.component {
        let hosts: Vec<String> = templated(&c.allowed_outbound_hosts).collect();
        assert_eq!(
            hosts, slots,
            "{id}: allowed_outbound_hosts are the variables, whole"
        );
        assert_eq!(c.variables["upstreams"], "{{ upstreams }}", "{id}");
        assert!(
            c.key_value_stores.contains(&kv),
            "{id}: the `{kv}` store is granted"
        );
    }
}
