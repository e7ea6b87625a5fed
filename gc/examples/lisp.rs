//! A small Lisp on the collector: cons cells, symbols, closures and environments are GC
//! objects; closures and the environments they are defined in form cycles; `set-cdr!` goes
//! through the write barrier. `cargo run --release --example lisp [FILE]` (without a file it
//! runs the built-in program below and checks every result against the expected one,
//! exiting with status 1 on a difference).
//!
//! **Rooting, the way design §2 and §10 ask for it.** No `Gc` (nor a [`Value`] holding one)
//! is ever kept in a `std` collection or anywhere else the collector cannot see while the
//! interpreter allocates:
//!
//! * lists under construction (the reader's lists, a call's evaluated arguments) live in the
//!   GC heap from the start: a [`ListBuilder`] appends cons cells at a tail, and a handle
//!   ([`gc::HandleScope::handle`]) roots the list's head, so every cell is reachable from a
//!   root; `apply` and the builtins take their arguments as that cons list;
//! * a `Value` returned by `eval` or `read` that must survive a later allocation goes into a
//!   handle first ([`hold`]); calling convention: whoever calls `eval`/`apply` keeps their
//!   arguments rooted, the callee roots what it makes;
//! * the global environment, which lives as long as the interpreter, is a [`gc::Root`];
//!   variables live in `Env` objects (a `Vec` inside a traced `RefLock`, which the
//!   collector does see).
//!
//! Because of this the interpreter is correct in the precise mode too (`--features
//! precise`: no stack is scanned at all), not only with the default conservative scan. CI
//! runs the debug build with `GOMALLOC_GOGC=1` (a collection every few dozen KiB of
//! allocation): a missed root makes a debug build abort on its first use of a freed
//! object.

use gc::{Gc, HandleScope, Local, Lock, Mutator, RefLock, Root, Trace};

#[derive(Trace)]
struct Sym {
    name: String,
}

#[derive(Trace)]
struct Pair {
    car: Lock<Value>,
    cdr: Lock<Value>,
}

#[derive(Trace)]
struct Lambda {
    params: Value,
    /// The body forms, evaluated in order.
    body: Value,
    env: Gc<Env>,
}

#[derive(Trace)]
struct Env {
    vars: RefLock<Vec<(Gc<Sym>, Value)>>,
    parent: Option<Gc<Env>>,
}

#[derive(Trace, Clone, Copy)]
enum Value {
    Nil,
    Int(i64),
    Bool(bool),
    Sym(Gc<Sym>),
    Pair(Gc<Pair>),
    Lambda(Gc<Lambda>),
    /// A function pointer holds no GC pointer: not traced.
    Builtin(#[gc(unsafe_skip)] BuiltinFn),
}

type R = Result<Value, String>;
/// A builtin gets its arguments as a cons list, which the caller keeps rooted.
type BuiltinFn = fn(&Mutator, Value) -> R;

fn cons(m: &Mutator, a: Value, d: Value) -> Value {
    Value::Pair(Gc::new(
        m,
        Pair {
            car: Lock::new(a),
            cdr: Lock::new(d),
        },
    ))
}

fn sym(m: &Mutator, s: &str) -> Value {
    Value::Sym(Gc::new(
        m,
        Sym {
            name: s.to_string(),
        },
    ))
}

/// Roots `v`'s object, if it has one, until the scope `s` ends; returns `v`.
fn hold<'s>(s: &'s HandleScope<'s>, v: Value) -> Value {
    match v {
        Value::Sym(g) => {
            s.handle(g);
        }
        Value::Pair(g) => {
            s.handle(g);
        }
        Value::Lambda(g) => {
            s.handle(g);
        }
        Value::Nil | Value::Int(_) | Value::Bool(_) | Value::Builtin(_) => {}
    }
    v
}

/// A cons list built front to back in the GC heap: a handle roots its first cell (a
/// sentinel), every other cell is reachable from it.
struct ListBuilder<'s> {
    s: &'s HandleScope<'s>,
    head: Local<'s, Pair>,
    tail: Gc<Pair>,
}

impl<'s> ListBuilder<'s> {
    fn new(s: &'s HandleScope<'s>) -> ListBuilder<'s> {
        let head = s.handle(Gc::new(
            s.mutator(),
            Pair {
                car: Lock::new(Value::Nil),
                cdr: Lock::new(Value::Nil),
            },
        ));
        ListBuilder {
            s,
            head,
            tail: head.get(),
        }
    }

    /// Appends `v` (rooted first: the new cell's allocation is a safepoint).
    fn push(&mut self, v: Value) {
        let m = self.s.mutator();
        let v = hold(self.s, v);
        let Value::Pair(cell) = cons(m, v, Value::Nil) else {
            unreachable!()
        };
        self.tail.cdr.set(m, Value::Pair(cell));
        self.tail = cell;
    }

    /// The list (rooted until the builder's scope ends).
    fn finish(self) -> Value {
        self.head.cdr.get()
    }
}

/// The `i`-th element of a list, if it has one.
fn nth(mut list: Value, i: usize) -> Option<Value> {
    for _ in 0..i {
        list = rest(list);
    }
    match list {
        Value::Pair(p) => Some(p.car.get()),
        _ => None,
    }
}

/// The `i`-th argument of a call.
fn arg(args: Value, i: usize) -> R {
    nth(args, i).ok_or_else(|| format!("missing argument {}", i + 1))
}

/// The forms after the first in a list (a lambda's body after its parameters).
fn rest(v: Value) -> Value {
    match v {
        Value::Pair(p) => p.cdr.get(),
        _ => Value::Nil,
    }
}

fn show(v: Value) -> String {
    match v {
        Value::Nil => "()".into(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => (if b { "#t" } else { "#f" }).into(),
        Value::Sym(s) => s.name.clone(),
        Value::Lambda(_) => "<lambda>".into(),
        Value::Builtin(_) => "<builtin>".into(),
        Value::Pair(_) => {
            let mut out = String::from("(");
            let mut c = v;
            while let Value::Pair(p) = c {
                if out.len() > 1 {
                    out.push(' ');
                }
                out.push_str(&show(p.car.get()));
                c = p.cdr.get();
            }
            if !matches!(c, Value::Nil) {
                out.push_str(" . ");
                out.push_str(&show(c));
            }
            out.push(')');
            out
        }
    }
}

// ---- reader ----

fn tokenize(src: &str) -> Vec<String> {
    src.lines()
        .map(|l| l.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('\'', " ' ")
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Reads one form. The result is not rooted: the caller roots it before it allocates.
fn read(m: &Mutator, toks: &[String], pos: &mut usize) -> R {
    let t = toks.get(*pos).ok_or("unexpected end of input")?;
    *pos += 1;
    match t.as_str() {
        "(" => m.scope(|s| {
            let mut items = ListBuilder::new(s);
            while toks.get(*pos).map(String::as_str) != Some(")") {
                if *pos >= toks.len() {
                    return Err("missing )".into());
                }
                items.push(read(m, toks, pos)?);
            }
            *pos += 1;
            Ok(items.finish())
        }),
        ")" => Err("unexpected )".into()),
        "'" => m.scope(|s| {
            let q = hold(s, read(m, toks, pos)?);
            let quoted = hold(s, cons(m, q, Value::Nil));
            let quote = hold(s, sym(m, "quote"));
            Ok(cons(m, quote, quoted))
        }),
        "#t" => Ok(Value::Bool(true)),
        "#f" => Ok(Value::Bool(false)),
        _ => Ok(t
            .parse::<i64>()
            .map(Value::Int)
            .unwrap_or_else(|_| sym(m, t))),
    }
}

// ---- evaluator ----

fn lookup(mut env: Gc<Env>, name: &str) -> R {
    loop {
        if let Some((_, v)) = env.vars.borrow().iter().rev().find(|(s, _)| s.name == name) {
            return Ok(*v);
        }
        env = env.parent.ok_or_else(|| format!("unbound: {name}"))?;
    }
}

/// Binds `s` to `v` in `env`. Allocates nothing in the GC heap (the `Vec` inside the
/// traced `RefLock` grows with `malloc`), so `v` needs no root here.
fn define(m: &Mutator, env: Gc<Env>, s: Gc<Sym>, v: Value) {
    let mut vars = env.vars.borrow_mut(m);
    match vars.iter_mut().find(|(k, _)| k.name == s.name) {
        Some(slot) => slot.1 = v,
        None => vars.push((s, v)),
    }
}

fn truthy(v: Value) -> bool {
    !matches!(v, Value::Bool(false) | Value::Nil)
}

/// Evaluates `x` in `env`; the caller keeps both rooted. The result is not rooted.
fn eval(m: &Mutator, x: Value, env: Gc<Env>) -> R {
    m.safepoint();
    let p = match x {
        Value::Sym(s) => return lookup(env, &s.name),
        Value::Pair(p) => p,
        v => return Ok(v),
    };
    // The argument forms: part of `x`, so rooted with it.
    let args = p.cdr.get();
    if let Value::Sym(s) = p.car.get() {
        match s.name.as_str() {
            "quote" => return arg(args, 0),
            "if" => {
                let c = eval(m, arg(args, 0)?, env)?;
                let branch = nth(args, if truthy(c) { 1 } else { 2 });
                return branch.map_or(Ok(Value::Nil), |b| eval(m, b, env));
            }
            "define" => {
                let (name, val) = match arg(args, 0)? {
                    // (define (f args...) body)
                    Value::Pair(sig) => {
                        let Value::Sym(n) = sig.car.get() else {
                            return Err("bad define".into());
                        };
                        let l = Gc::new(
                            m,
                            Lambda {
                                params: sig.cdr.get(),
                                body: rest(args),
                                env,
                            },
                        );
                        (n, Value::Lambda(l))
                    }
                    Value::Sym(n) => (n, eval(m, arg(args, 1)?, env)?),
                    _ => return Err("bad define".into()),
                };
                // No safepoint between making `val` and storing it.
                define(m, env, name, val);
                return Ok(Value::Nil);
            }
            "lambda" => {
                return Ok(Value::Lambda(Gc::new(
                    m,
                    Lambda {
                        params: arg(args, 0)?,
                        body: rest(args),
                        env,
                    },
                )));
            }
            "set-cdr!" => {
                return m.scope(|s| {
                    let Value::Pair(target) = hold(s, eval(m, arg(args, 0)?, env)?) else {
                        return Err("set-cdr! of a non-pair".into());
                    };
                    target.cdr.set(m, eval(m, arg(args, 1)?, env)?);
                    Ok(Value::Nil)
                });
            }
            _ => {}
        }
    }
    m.scope(|s| {
        let f = hold(s, eval(m, p.car.get(), env)?);
        let mut vals = ListBuilder::new(s);
        let mut a = args;
        while let Value::Pair(c) = a {
            vals.push(eval(m, c.car.get(), env)?);
            a = c.cdr.get();
        }
        apply(m, f, vals.finish())
    })
}

/// Calls `f` with the argument list `args`; the caller keeps both rooted.
fn apply(m: &Mutator, f: Value, args: Value) -> R {
    match f {
        Value::Builtin(b) => b(m, args),
        Value::Lambda(l) => m.scope(|s| {
            let env = s.handle(Gc::new(
                m,
                Env {
                    vars: RefLock::new(Vec::new()),
                    parent: Some(l.env),
                },
            ));
            let (mut params, mut vals) = (l.params, args);
            while let Value::Pair(p) = params {
                let Value::Sym(name) = p.car.get() else {
                    return Err("bad parameter".into());
                };
                let v = nth(vals, 0).ok_or("too few arguments")?;
                define(m, env.get(), name, v);
                params = p.cdr.get();
                vals = rest(vals);
            }
            let mut result = Value::Nil;
            let mut body = l.body;
            while let Value::Pair(form) = body {
                result = eval(m, form.car.get(), env.get())?;
                body = form.cdr.get();
            }
            Ok(result)
        }),
        _ => Err(format!("not a function: {}", show(f))),
    }
}

fn int(v: Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(i),
        _ => Err(format!("not a number: {}", show(v))),
    }
}

/// The global environment with the builtins, rooted for as long as the interpreter runs.
fn global_env(m: &Mutator) -> Root<Env> {
    // Rooted before the next allocation (`Root::new` is not a safepoint).
    let env = Root::new(Gc::new(
        m,
        Env {
            vars: RefLock::new(Vec::new()),
            parent: None,
        },
    ));
    let builtins: [(&str, BuiltinFn); 10] = [
        ("+", |_, a| {
            let (mut sum, mut c) = (0, a);
            while let Value::Pair(p) = c {
                sum += int(p.car.get())?;
                c = p.cdr.get();
            }
            Ok(Value::Int(sum))
        }),
        ("-", |_, a| {
            Ok(Value::Int(int(arg(a, 0)?)? - int(arg(a, 1)?)?))
        }),
        ("*", |_, a| {
            Ok(Value::Int(int(arg(a, 0)?)? * int(arg(a, 1)?)?))
        }),
        ("<", |_, a| {
            Ok(Value::Bool(int(arg(a, 0)?)? < int(arg(a, 1)?)?))
        }),
        ("=", |_, a| {
            Ok(Value::Bool(int(arg(a, 0)?)? == int(arg(a, 1)?)?))
        }),
        // Both parts are rooted by the argument list for the one allocation.
        ("cons", |m, a| Ok(cons(m, arg(a, 0)?, arg(a, 1)?))),
        ("car", |_, a| match arg(a, 0)? {
            Value::Pair(p) => Ok(p.car.get()),
            _ => Err("car of a non-pair".into()),
        }),
        ("cdr", |_, a| match arg(a, 0)? {
            Value::Pair(p) => Ok(p.cdr.get()),
            _ => Err("cdr of a non-pair".into()),
        }),
        ("null?", |_, a| {
            Ok(Value::Bool(matches!(arg(a, 0)?, Value::Nil)))
        }),
        // The argument list is a fresh list made for this call: it is the result.
        ("list", |_, a| Ok(a)),
    ];
    for (name, f) in builtins {
        let Value::Sym(s) = sym(m, name) else {
            unreachable!()
        };
        // No safepoint between making the symbol and storing it.
        define(m, env.get(), s, Value::Builtin(f));
    }
    env
}

/// The built-in program: each line that prints is checked against [`EXPECTED`].
const PROGRAM: &str = r#"
(define (fib n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(define (range a b) (if (< a b) (cons a (range (+ a 1) b)) '()))
(define (map f xs) (if (null? xs) '() (cons (f (car xs)) (map f (cdr xs)))))
(define (sum xs) (if (null? xs) 0 (+ (car xs) (sum (cdr xs)))))
(define (length xs) (if (null? xs) 0 (+ 1 (length (cdr xs)))))
(define (rev xs acc) (if (null? xs) acc (rev (cdr xs) (cons (car xs) acc))))
(define (make-adder n) (lambda (x) (+ x n)))
((make-adder 40) 2)
(define (ring k) (define xs (range 0 k)) (set-cdr! (last xs) xs) k)
(define (last xs) (if (null? (cdr xs)) xs (last (cdr xs))))
(define (churn i acc) (if (= i 0) acc (churn (- i 1) (+ acc (sum (map (lambda (x) (* x x)) (range 0 50)))))))
(fib 16)
(sum (map (lambda (x) (* x x)) (range 0 100)))
(ring 1000)
; Lists made fresh as arguments, and lists of fresh lists.
(sum (list 1 2 3 4 5 (+ 2 4) (* 7 1) (- 10 2)))
(car (cdr (list (list 1 2) (list 3 (list 4 5)) (list 6))))
(length (map (lambda (x) (list x (list x x) (range 0 x))) (range 0 300)))
(rev (range 0 8) '())
'(1 (2 3) #t () quote)
(define xs (range 0 5))
(set-cdr! (cdr xs) (list 40 (+ 25 25) (car (list 60 70))))
xs
(sum (map (lambda (ys) (sum ys)) (map (lambda (n) (range 0 n)) (range 0 40))))
(churn 200 0)
"#;

/// What [`PROGRAM`] prints, line by line.
const EXPECTED: &str = "\
42
987
328350
1000
36
(3 (4 5))
300
(7 6 5 4 3 2 1 0)
(1 (2 3) #t () quote)
(0 1 40 50 60)
9880
8085000
";

fn main() {
    let file = std::env::args().nth(1);
    let src = match &file {
        Some(f) => std::fs::read_to_string(f).expect("read program"),
        None => PROGRAM.to_string(),
    };
    let m = gc::attach();
    let env = global_env(&m);
    let toks = tokenize(&src);
    let mut pos = 0;
    let mut printed = String::new();
    while pos < toks.len() {
        // The form stays rooted while it is evaluated; the result is printed before the
        // scope ends and before anything else is allocated.
        let r = m.scope(|s| {
            let x = hold(s, read(&m, &toks, &mut pos)?);
            eval(&m, x, env.get()).map(|v| match v {
                Value::Nil => None,
                v => Some(show(v)),
            })
        });
        match r {
            Ok(None) => {}
            Ok(Some(line)) => {
                println!("{line}");
                printed.push_str(&line);
                printed.push('\n');
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    let s = gc::stats();
    eprintln!(
        ";; {} collections, {} objects freed, longest pause {} ms, heap goal {} KiB",
        s.cycles,
        s.objects_freed,
        gc::fmt_ms(s.pause_max),
        s.heap_goal >> 10
    );
    if file.is_none() {
        if printed != EXPECTED {
            eprintln!("lisp: wrong results; expected:\n{EXPECTED}");
            std::process::exit(1);
        }
        eprintln!(";; all {} results as expected", EXPECTED.lines().count());
    }
}
