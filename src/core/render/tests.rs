//! Rendering, the static check and the helpers.

use serde_json::json;

use super::check::{Shape, CONTEXT_SHAPE};
use super::*;
use crate::model::alert::parse_notification;

fn renderer() -> Renderer {
    Renderer::new()
}

fn sample_context() -> Value {
    let body = br#"{
      "receiver": "karo", "groupKey": "{}:{alertname=\"HighCPU\"}", "externalURL": "http://am:9093",
      "groupLabels": {"alertname": "HighCPU"}, "commonLabels": {"alertname": "HighCPU"},
      "commonAnnotations": {"summary": "CPU high"},
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "HighCPU", "instance": "node-1:9100", "severity": "critical", "empty": ""},
        "annotations": {"summary": "CPU high", "description": "line 1\nline 2"},
        "startsAt": "2024-05-06T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prom/graph", "fingerprint": "0123456789abcdef"
      }]
    }"#;
    let received = jiff::Timestamp::UNIX_EPOCH;
    let n = parse_notification(body, received).unwrap();
    context(&n.alerts[0], &n, "cpu-reaction", "ops", "restart")
}

fn render(template: &str) -> Result<String, RenderError> {
    render_str(&renderer(), template, &sample_context())
}

fn ok(template: &str) -> String {
    render(template).unwrap_or_else(|e| panic!("{template}: {e}"))
}

#[test]
fn context_has_the_documented_fields() {
    let ctx = sample_context();
    assert_eq!(ctx["alert"]["status"], "firing");
    assert_eq!(ctx["alert"]["labels"]["severity"], "critical");
    assert_eq!(ctx["alert"]["generatorURL"], "http://prom/graph");
    assert_eq!(ctx["labels"]["instance"], "node-1:9100");
    assert_eq!(ctx["annotations"]["summary"], "CPU high");
    assert_eq!(ctx["status"], "firing");
    assert_eq!(ctx["fingerprint"], "0123456789abcdef");
    assert_eq!(ctx["group"]["receiver"], "karo");
    assert_eq!(ctx["group"]["externalURL"], "http://am:9093");
    assert_eq!(ctx["group"]["commonAnnotations"]["summary"], "CPU high");
    assert_eq!(
        ctx["reaction"],
        json!({"name": "cpu-reaction", "namespace": "ops"})
    );
    assert_eq!(ctx["action"], json!({"name": "restart"}));
}

/// The static check's model of the context must be the context.
#[test]
fn context_shape_matches_context() {
    fn same(value: &Value, shape: Shape, path: &str) {
        match (shape, value) {
            (Shape::Object(fields), Value::Object(map)) => {
                let keys: Vec<_> = map.keys().map(String::as_str).collect();
                let mut expected: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
                expected.sort_unstable();
                let mut keys = keys;
                keys.sort_unstable();
                assert_eq!(keys, expected, "keys of {path}");
                for (k, s) in fields {
                    same(&map[*k], *s, &format!("{path}.{k}"));
                }
            }
            (Shape::Map, Value::Object(map)) => {
                assert!(map.values().all(Value::is_string), "{path}")
            }
            (Shape::Str, Value::String(_)) => {}
            (Shape::Any, _) => {}
            (s, v) => panic!("{path}: {s:?} vs {v}"),
        }
    }
    same(&sample_context(), Shape::Object(CONTEXT_SHAPE), "");
}

#[test]
fn plain_variables() {
    assert_eq!(ok("{{labels.severity}}"), "critical");
    assert_eq!(ok("{{alert.labels.instance}}"), "node-1:9100");
    assert_eq!(ok("{{status}}/{{alert.status}}"), "firing/firing");
    assert_eq!(
        ok("{{group.receiver}} {{reaction.namespace}}/{{reaction.name}} {{action.name}}"),
        "karo ops/cpu-reaction restart"
    );
    assert_eq!(ok("{{annotations.description}}"), "line 1\nline 2");
    assert_eq!(ok("no template"), "no template");
    assert_eq!(
        ok("{{#each labels}}{{@key}}={{this}};{{/each}}"),
        "alertname=HighCPU;empty=;instance=node-1:9100;severity=critical;"
    );
}

#[test]
fn no_html_escaping() {
    let ctx = json!({"labels": {"x": "<a href=\"x\">&'</a>"}});
    assert_eq!(
        render_str(&renderer(), "{{labels.x}} {{{labels.x}}}", &ctx).unwrap(),
        "<a href=\"x\">&'</a> <a href=\"x\">&'</a>"
    );
}

#[test]
fn helper_default_tolerates_absence() {
    assert_eq!(ok(r#"{{default labels.team "none"}}"#), "none");
    assert_eq!(ok(r#"{{default labels.severity "none"}}"#), "critical");
    assert_eq!(ok(r#"{{default labels.empty "none"}}"#), "none");
    assert_eq!(ok(r#"{{default labels.team labels.severity}}"#), "critical");
    assert_eq!(ok(r#"{{upper (default labels.team "ops")}}"#), "OPS");
    assert_eq!(
        ok(r#"{{default labels.team (default annotations.team "nobody")}}"#),
        "nobody"
    );
    // Both missing: nothing to fall back on.
    let e = render("{{default labels.team labels.owner}}").unwrap_err();
    assert!(e.to_string().contains("labels.owner"), "{e}");
    let e = render("{{default labels.team}}").unwrap_err();
    assert!(e.to_string().contains("takes 2 arguments"), "{e}");
}

#[test]
fn helpers_case_trunc_replace() {
    assert_eq!(ok("{{lower \"MiXeD Ünï\"}}"), "mixed ünï");
    assert_eq!(ok("{{upper labels.severity}}"), "CRITICAL");
    assert_eq!(ok("{{trunc labels.instance 4}}"), "node");
    assert_eq!(ok("{{trunc labels.instance 100}}"), "node-1:9100");
    assert_eq!(ok("{{trunc labels.instance -4}}"), "9100");
    assert_eq!(ok("{{trunc \"héllo\" 2}}"), "hé");
    assert_eq!(ok("{{trunc labels.instance 0}}"), "");
    assert_eq!(ok(r#"{{replace labels.instance ":" "_"}}"#), "node-1_9100");
    assert_eq!(ok(r#"{{replace "a.b.c" "." ""}}"#), "abc");
    let e = render("{{trunc labels.instance \"x\"}}").unwrap_err();
    assert!(e.to_string().contains("needs an integer"), "{e}");
}

#[test]
fn helpers_json_quote_shell_quote() {
    assert_eq!(ok("{{json labels.severity}}"), r#""critical""#);
    assert_eq!(
        ok("{{json group.groupLabels}}"),
        r#"{"alertname":"HighCPU"}"#
    );
    let alert: Value = serde_json::from_str(&ok("{{json alert}}")).unwrap();
    assert_eq!(alert, sample_context()["alert"]);
    assert_eq!(ok("{{json 3}}"), "3");
    assert_eq!(
        ok("{{quote annotations.description}}"),
        r#""line 1\nline 2""#
    );
    assert_eq!(ok(r#"{{quote "say \"hi\""}}"#), r#""say \"hi\"""#);
    assert_eq!(ok("{{shellQuote labels.severity}}"), "'critical'");
    let ctx = json!({"labels": {"x": "it's $(id) `x`"}});
    assert_eq!(
        render_str(&renderer(), "{{shellQuote labels.x}}", &ctx).unwrap(),
        r"'it'\''s $(id) `x`'"
    );
}

#[test]
fn helper_dns1123() {
    assert_eq!(ok("{{dns1123 labels.instance}}"), "node-1-9100");
    assert_eq!(ok("{{dns1123 \"--Hello__World..--\"}}"), "hello-world");
    assert_eq!(ok("{{dns1123 \"!!!\"}}"), "x");
    assert_eq!(ok("{{dns1123 \"\"}}"), "x");
    assert_eq!(ok("{{dns1123 \"abc-def\" 4}}"), "abc");
    let long = "a".repeat(100);
    assert_eq!(
        render_str(&renderer(), "{{dns1123 s}}", &json!({"s": long}))
            .unwrap()
            .len(),
        63
    );
}

#[test]
fn dns1123_label_is_always_valid() {
    let re = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap();
    let inputs = [
        "",
        "-",
        "A",
        "Ab-Cd",
        "a--b",
        "--a--",
        "ÄÖÜ",
        "x.y/z",
        "İstanbul",
        "a b c",
        "0123456789012345678901234567890123456789012345678901234567890-23456",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b",
    ];
    for s in inputs {
        for max in [1, 2, 5, 63, 64, 1000] {
            let out = dns1123_label(s, max);
            assert!(re.is_match(&out), "{s:?} max {max} -> {out:?}");
            assert!(out.len() <= max.clamp(1, 63), "{s:?} max {max} -> {out:?}");
        }
    }
    assert_eq!(
        dns1123_label(
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b",
            63
        )
        .len(),
        62
    );
}

#[test]
fn helper_now_is_rfc3339_utc() {
    let s = ok("{{now}}");
    assert!(s.ends_with('Z'), "{s}");
    s.parse::<jiff::Timestamp>().unwrap();
}

#[test]
fn builtin_helpers_still_work() {
    assert_eq!(
        ok(r#"{{#if (eq labels.severity "critical")}}page{{else}}mail{{/if}}"#),
        "page"
    );
    assert_eq!(ok("{{#if labels.team}}t{{else}}no team{{/if}}"), "no team");
    assert_eq!(ok(r#"{{lookup labels "severity"}}"#), "critical");
    assert_eq!(
        ok("{{#with alert}}{{labels.severity}}{{/with}}"),
        "critical"
    );
}

#[test]
fn strict_mode_missing_variable_errors_with_field_path() {
    let tree = json!({"args": ["echo", "{{labels.team}}"]});
    let t = TemplateTree::compile(&tree, "spec.actions[0]").unwrap();
    t.validate(&renderer()).unwrap();
    let e = t.render(&renderer(), &sample_context()).unwrap_err();
    assert_eq!(e.field(), "spec.actions[0].args[1]");
    assert_eq!(e.reason(), "RenderFailed");
    assert_eq!(
        e.to_string(),
        "spec.actions[0].args[1]: variable `labels.team` does not exist (use `default` to allow it to be missing)"
    );
    let e = render("{{lower labels.team}}").unwrap_err();
    assert!(
        e.to_string().contains("`labels.team` does not exist"),
        "{e}"
    );
}

#[test]
fn unclosed_block_is_a_parse_error_at_compile() {
    let tree = json!({"spec": {"template": {"spec": {"containers": [{"command": ["sh", "-c", "{{#if labels.x}}y"]}]}}}});
    let e = TemplateTree::compile(&tree, "spec.jobTemplate").unwrap_err();
    assert_eq!(e.reason(), "InvalidTemplate");
    assert_eq!(
        e.field(),
        "spec.jobTemplate.spec.template.spec.containers[0].command[2]"
    );
    assert!(matches!(e, RenderError::Parse { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "spec.jobTemplate.spec.template.spec.containers[0].command[2]: invalid template: "
        ),
        "{e}"
    );
    for bad in ["{{labels.x", "{{#if x}}a{{/each}}", "{{}}"] {
        let e = TemplateTree::compile(&json!([bad]), "f").unwrap_err();
        assert!(matches!(e, RenderError::Parse { .. }), "{bad}: {e:?}");
        assert!(!e.to_string().contains('\n'), "{bad}: {e}");
    }
}

fn validate(template: &str) -> Result<(), RenderError> {
    TemplateTree::compile(&json!({"s": template}), "spec.actions[0]")?.validate(&renderer())
}

#[test]
fn static_validation_accepts_the_context() {
    let good = [
        "{{labels.anything}}",
        "{{annotations.anything}}",
        "{{alert.labels.x}} {{alert.annotations.y}} {{alert.status}} {{alert.startsAt}} {{alert.endsAt}} {{alert.generatorURL}} {{alert.fingerprint}}",
        "{{status}} {{fingerprint}}",
        "{{group.receiver}} {{group.groupKey}} {{group.groupLabels.a}} {{group.commonLabels.b}} {{group.commonAnnotations.c}} {{group.externalURL}}",
        "{{reaction.name}} {{reaction.namespace}} {{action.name}}",
        "{{labels.[with space]}} {{this.labels.x}} {{./status}} {{@root.alert.status}}",
        r#"{{default labels.team "none"}} {{now}} {{json alert}} {{dns1123 (lower labels.x) 20}}"#,
        "{{#each labels}}{{@key}}={{this}} {{@index}} {{../status}} {{@root.reaction.name}}{{else}}none{{/each}}",
        "{{#each labels as |value name|}}{{name}}={{value}}{{/each}}",
        "{{#each alert}}{{@key}}{{this.whatever}}{{/each}}",
        "{{#with alert}}{{labels.x}} {{status}} {{../action.name}}{{/with}}",
        "{{#with alert as |a|}}{{a.annotations.x}}{{/with}}",
        "{{#with labels}}{{team}}{{/with}}",
        "{{#if labels.x}}{{labels.x}}{{else if annotations.y}}{{annotations.y}}{{else}}-{{/if}}",
        "{{#unless (eq status \"firing\")}}resolved{{/unless}}",
        "{{{{raw}}}}{{not.checked}}{{{{/raw}}}}",
        "{{! a comment }} \\{{escaped}}",
        r#"{{lookup labels "x"}} {{len labels}}"#,
    ];
    for t in good {
        if let Err(e) = validate(t) {
            panic!("{t}: {e}");
        }
    }
}

#[test]
fn static_validation_rejects_mistakes() {
    let cases = [
        ("{{foo}}", "spec.actions[0].s: unknown variable `foo`"),
        (
            "{{alert.nope}}",
            "spec.actions[0].s: unknown variable `alert.nope`",
        ),
        (
            "{{labels.x.y}}",
            "spec.actions[0].s: unknown variable `labels.x.y`",
        ),
        (
            "{{status.x}}",
            "spec.actions[0].s: unknown variable `status.x`",
        ),
        (
            "{{group.labels}}",
            "spec.actions[0].s: unknown variable `group.labels`",
        ),
        (
            "{{reaction.uid}}",
            "spec.actions[0].s: unknown variable `reaction.uid`",
        ),
        (
            "{{Labels.x}}",
            "spec.actions[0].s: unknown variable `Labels.x`",
        ),
        ("{{@index}}", "spec.actions[0].s: unknown variable `@index`"),
        (
            "{{../status}}",
            "spec.actions[0].s: unknown variable `../status`",
        ),
        ("{{lower foo}}", "spec.actions[0].s: unknown variable `foo`"),
        (
            r#"{{default foo "x"}}"#,
            "spec.actions[0].s: unknown variable `foo`",
        ),
        (
            "{{#if foo}}x{{/if}}",
            "spec.actions[0].s: unknown variable `foo`",
        ),
        (
            "{{#if labels.x}}{{else}}{{nope}}{{/if}}",
            "spec.actions[0].s: unknown variable `nope`",
        ),
        (
            "{{#each labels}}{{this.x}}{{/each}}",
            "spec.actions[0].s: unknown variable `this.x`",
        ),
        (
            "{{#with alert}}{{nope}}{{/with}}",
            "spec.actions[0].s: unknown variable `nope`",
        ),
        (
            "{{#each labels}}{{../nope}}{{/each}}",
            "spec.actions[0].s: unknown variable `../nope`",
        ),
        (
            "{{#each labels}}x{{else}}{{@key}}{{/each}}",
            "spec.actions[0].s: unknown variable `@key`",
        ),
        (
            "{{frobnicate labels.x}}",
            "spec.actions[0].s: unknown helper `frobnicate`",
        ),
        (
            "{{upper (frobnicate labels.x)}}",
            "spec.actions[0].s: unknown helper `frobnicate`",
        ),
        (
            "{{#frob}}x{{/frob}}",
            "spec.actions[0].s: unknown helper `frob`",
        ),
        (
            "{{#alert}}{{status}}{{/alert}}",
            "spec.actions[0].s: unknown helper `alert`",
        ),
        (
            "{{lower}}",
            "spec.actions[0].s: helper `lower` takes 1 argument, got 0",
        ),
        (
            "{{trunc labels.x}}",
            "spec.actions[0].s: helper `trunc` takes 2 arguments (string, length), got 1",
        ),
        (
            "{{now 1}}",
            "spec.actions[0].s: helper `now` takes no arguments, got 1",
        ),
        (
            "{{upper (lower)}}",
            "spec.actions[0].s: helper `lower` takes 1 argument, got 0",
        ),
        (
            "{{#if labels.x}}{{default labels.y}}{{/if}}",
            "spec.actions[0].s: helper `default` takes 2 arguments (value, fallback), got 1",
        ),
        (
            "{{> partial}}",
            "spec.actions[0].s: partials are not supported",
        ),
        (
            "{{#> partial}}x{{/partial}}",
            "spec.actions[0].s: partials are not supported",
        ),
    ];
    for (t, expected) in cases {
        let e = validate(t).expect_err(t);
        assert_eq!(e.to_string(), expected, "{t}");
        assert_eq!(e.reason(), "InvalidTemplate");
    }
}

#[test]
fn check_reports_every_problem() {
    let tree = json!({
        "command": ["{{foo}}", "ok {{labels.x}}", "{{#if x}}"],
        "env": [{"name": "A", "value": "{{nope bar}}"}]
    });
    let errors = TemplateTree::check(&tree, "spec.actions[1]", &renderer());
    let fields: Vec<_> = errors.iter().map(RenderError::field).collect();
    assert_eq!(
        fields,
        [
            "spec.actions[1].command[2]",
            "spec.actions[1].command[0]",
            "spec.actions[1].env[0].value",
        ]
    );
    let t = TemplateTree::compile(&json!(["{{a}}", "{{b}}"]), "x").unwrap();
    assert_eq!(t.validate_all(&renderer()).len(), 2);
}

fn hostile_values() -> Vec<String> {
    vec![
        "{{annotations.secret}}".to_owned(),
        "{{#each alert}}{{/each}}".to_owned(),
        r#"a "quoted" 'value'"#.to_owned(),
        "x\n  hostPath:\n    path: /".to_owned(),
        "$(id) `id` ; rm -rf /".to_owned(),
        "key: value\n- item\n{\"json\": true}".to_owned(),
        "<script>&amp;</script>".to_owned(),
        "é".repeat(300),
    ]
}

#[test]
fn hostile_label_values_stay_in_their_string() {
    let tree = json!({
        "metadata": {"name": "job-{{dns1123 labels.evil}}", "labels": {"{{labels.evil}}": "k"}},
        "spec": {
            "containers": [{
                "name": "c",
                "image": "busybox",
                "command": ["sh", "-c", "echo {{shellQuote labels.evil}}"],
                "args": ["{{labels.evil}}", "--flag={{labels.evil}}"],
                "env": [{"name": "E", "value": "{{labels.evil}}"}],
                "ports": [{"containerPort": 8080}],
                "tty": false
            }],
            "volumes": []
        }
    });
    let t = TemplateTree::compile(&tree, "spec.jobTemplate").unwrap();
    t.validate(&renderer()).unwrap();
    for evil in hostile_values() {
        let ctx = json!({
            "labels": {"evil": evil},
            "annotations": {"secret": "SECRET"},
            "alert": {"x": 1},
        });
        let out = t.render(&renderer(), &ctx).unwrap();
        let c = &out["spec"]["containers"][0];
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(out["spec"]["volumes"], json!([]));
        assert_eq!(c.as_object().unwrap().len(), 7);
        assert_eq!(c["args"], json!([evil, format!("--flag={evil}")]));
        assert_eq!(c["env"], json!([{"name": "E", "value": evil}]));
        assert_eq!(c["ports"], json!([{"containerPort": 8080}]));
        assert_eq!(c["tty"], json!(false));
        let expected = format!("echo '{}'", evil.replace('\'', r"'\''"));
        assert_eq!(c["command"], json!(["sh", "-c", expected]));
        // Keys are not templates.
        assert_eq!(out["metadata"]["labels"], json!({"{{labels.evil}}": "k"}));
        assert_eq!(out["spec"].as_object().unwrap().len(), 2);
        assert!(!out.to_string().contains("SECRET"), "{evil}");
    }
}

#[test]
fn rendered_output_is_not_rendered_again() {
    let ctx = json!({"labels": {"x": "{{labels.y}}", "y": "SECOND"}});
    let t = TemplateTree::compile(
        &json!({"a": "{{labels.x}}", "b": ["{{labels.x}}{{labels.x}}"]}),
        "f",
    )
    .unwrap();
    let out = t.render(&renderer(), &ctx).unwrap();
    assert_eq!(
        out,
        json!({"a": "{{labels.y}}", "b": ["{{labels.y}}{{labels.y}}"]})
    );
    assert_eq!(
        render_str(&renderer(), "{{labels.x}}", &ctx).unwrap(),
        "{{labels.y}}"
    );
}

#[test]
fn non_strings_and_plain_strings_pass_through() {
    let tree = json!({"n": 1, "f": 1.5, "b": true, "z": null, "s": "plain $(x) }}", "a": [[], {}], "{{k}}": "v"});
    let t = TemplateTree::compile(&tree, "").unwrap();
    t.validate(&renderer()).unwrap();
    assert_eq!(t.render(&renderer(), &json!({})).unwrap(), tree);
}

#[test]
fn field_paths_without_prefix() {
    let t = TemplateTree::compile(&json!({"a": {"b": ["x", "{{zz}}"]}}), "").unwrap();
    let e = t.validate(&renderer()).unwrap_err();
    assert_eq!(e.to_string(), "a.b[1]: unknown variable `zz`");
    let e = render_str(&renderer(), "{{zz}}", &json!({})).unwrap_err();
    assert!(
        e.to_string().starts_with("variable `zz` does not exist"),
        "{e}"
    );
    let e = render_str(&renderer(), "{{#if}}", &json!({})).unwrap_err();
    assert!(e.to_string().starts_with("invalid template: "), "{e}");
}

#[test]
fn multiline_runtime_errors_have_a_position() {
    let e = render("#!/bin/sh\necho {{labels.nope}}\n").unwrap_err();
    assert!(e.to_string().contains("(line 2, column 6)"), "{e}");
}

#[test]
fn template_tree_is_shareable() {
    fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
    assert_shareable::<TemplateTree>();
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Renderer>();
}

#[test]
fn go_template_syntax_gets_the_handlebars_spelling() {
    for (go, hint) in [
        ("{{ .Labels.instance }}", "{{labels.instance}}"),
        (
            "restart {{.Labels.deployment}} now",
            "{{labels.deployment}}",
        ),
        ("{{- .Annotations.summary -}}", "{{annotations.summary}}"),
        (r#"{{ index .Labels "pod" }}"#, "{{labels.pod}}"),
        ("{{ .Status }}", "{{status}}"),
        ("{{ .StartsAt }}", "{{alert.startsAt}}"),
        ("{{ .CommonLabels.team }}", "{{group.commonLabels.team}}"),
    ] {
        let e = TemplateTree::compile(&json!(go), "spec.actions[0].args[0]").expect_err("refused");
        let text = e.to_string();
        assert!(
            text.contains("Go template syntax") && text.contains(hint),
            "{go}: {text}"
        );
        assert!(text.starts_with("spec.actions[0].args[0]: "), "{text}");
    }
    // Handlebars' own `{{.}}` and `{{this}}` are not Go.
    assert!(go_template_hint("{{#each labels}}{{.}}{{/each}}").is_none());
    assert!(go_template_hint("{{labels.instance}}").is_none());
}

#[test]
fn reactions_with_the_same_tree_share_one_compiled_copy() {
    let renderer = Renderer::new();
    let action = json!({"name": "fix", "args": ["echo {{labels.instance}}"]});
    let a = renderer.compile_shared(&action, "spec.actions[0]").unwrap();
    let b = renderer.compile_shared(&action, "spec.actions[0]").unwrap();
    assert!(Arc::ptr_eq(&a.root, &b.root));
    // Another field (its error messages name it) or another text: a copy of its own.
    let other_field = renderer.compile_shared(&action, "spec.actions[1]").unwrap();
    assert!(!Arc::ptr_eq(&a.root, &other_field.root));
    let other_text = json!({"name": "fix", "args": ["echo {{labels.job}}"]});
    let c = renderer
        .compile_shared(&other_text, "spec.actions[0]")
        .unwrap();
    assert!(!Arc::ptr_eq(&a.root, &c.root));
    // An invalid tree is refused every time, never shared.
    let bad = json!({"args": ["{{nosuch}}"]});
    assert!(renderer.compile_shared(&bad, "spec.actions[0]").is_err());
    assert!(renderer.compile_shared(&bad, "spec.actions[0]").is_err());
    // Once no reaction holds it, the next compile makes a new copy.
    let weak = Arc::downgrade(&a.root);
    drop((a, b));
    assert!(weak.upgrade().is_none());
    let again = renderer.compile_shared(&action, "spec.actions[0]").unwrap();
    assert_eq!(
        again
            .render(&renderer, &json!({"labels": {"instance": "n1"}}))
            .unwrap()["args"][0],
        "echo n1"
    );
}
