//! Builds run on the build image (compilers and -dev headers), apps on the run image: a Flask
//! app with psycopg2 from source and a Node app with a native module (node-gyp against Debian's
//! Node headers, no download) build and run, and their app images have no compiler. The run
//! image has the console clients (`psql`, `redis-cli`, `mysql`) for `caas run`.

use caas_e2e::{docker, temp_dir_with, Platform};

const FLASK_APP: &str = r#"import os
import flask
import psycopg2

app = flask.Flask(__name__)


@app.route("/")
def index():
    return "flask with psycopg2 %s\n" % psycopg2.__version__.split()[0]


app.run(host="0.0.0.0", port=int(os.environ["PORT"]))
"#;

const ADDON_C: &str = r#"#include <node_api.h>

static napi_value Answer(napi_env env, napi_callback_info info) {
  napi_value result;
  napi_create_int32(env, 42, &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "answer", NAPI_AUTO_LENGTH, Answer, NULL, &fn);
  napi_set_named_property(env, exports, "answer", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
"#;

const NODE_SERVER: &str = r#"const http = require("http");
const addon = require("./build/Release/addon.node");
http.createServer((req, res) => res.end(`native addon says ${addon.answer()}\n`))
  .listen(Number(process.env.PORT));
"#;

fn body(p: &Platform, app: &str) -> String {
    match p.http_get(app, "/") {
        Ok((200, body)) => body,
        other => panic!("{app} does not answer 200: {other:?}"),
    }
}

/// The app image of `app`'s release 1 has no C compiler.
fn assert_no_compiler(app: &str) {
    let image = format!("caas/{app}:v1");
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        "command -v gcc || command -v cc || command -v g++ || echo no compiler",
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "no compiler", "{out}");
}

#[test]
fn c_extensions_and_native_modules_build_and_the_app_image_has_no_compiler() {
    caas_e2e::require_stack();
    let p = Platform::start();

    p.caas_ok(&["apps:create", "flaskpg"]);
    let flask = temp_dir_with(&[
        ("app.py", FLASK_APP),
        ("requirements.txt", "flask==3.0.3\npsycopg2==2.9.9\n"),
        ("Procfile", "web: python app.py\n"),
    ]);
    p.caas_ok(&["push", flask.path().to_str().unwrap(), "-a", "flaskpg"]);
    assert_eq!(body(&p, "flaskpg"), "flask with psycopg2 2.9.9\n");
    assert_no_compiler("flaskpg");

    // The console clients are in the run image, and a one-off finds them.
    let out = p.caas_ok(&[
        "run",
        "-a",
        "flaskpg",
        "--",
        "sh",
        "-c",
        "psql --version; redis-cli --version; mysql --version",
    ]);
    assert!(out.contains("psql (PostgreSQL)"), "{out}");
    assert!(out.contains("redis-cli"), "{out}");
    assert!(
        out.to_lowercase().contains("mariadb") || out.contains("mysql"),
        "{out}"
    );

    p.caas_ok(&["apps:create", "nodenative"]);
    let node = temp_dir_with(&[
        (
            "package.json",
            r#"{ "name": "nodenative", "version": "1.0.0", "private": true, "gypfile": true,
  "scripts": { "start": "node server.js" } }
"#,
        ),
        (
            "binding.gyp",
            r#"{ "targets": [ { "target_name": "addon", "sources": [ "addon.c" ] } ] }
"#,
        ),
        ("addon.c", ADDON_C),
        ("server.js", NODE_SERVER),
        ("Procfile", "web: node server.js\n"),
    ]);
    p.caas_ok(&["push", node.path().to_str().unwrap(), "-a", "nodenative"]);
    assert_eq!(body(&p, "nodenative"), "native addon says 42\n");
    assert_no_compiler("nodenative");
}
