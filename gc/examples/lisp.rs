//! A small Lisp on the collector: cons cells, symbols, closures and environments are GC
//! objects; closures and the environments they are defined in form cycles; `set-cdr!` goes
//! through the write barrier. `cargo run --release --example lisp [FILE]` (without a file it
//! runs the built-in program below).

use gc::{Gc, Lock, Mutator, RefLock, Trace};

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
type BuiltinFn = fn(&Mutator, &[Value]) -> R;

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

fn list_to_vec(mut v: Value) -> Vec<Value> {
    let mut out = Vec::new();
    while let Value::Pair(p) = v {
        out.push(p.car.get());
        v = p.cdr.get();
    }
    out
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
            let items: Vec<String> = list_to_vec(v).into_iter().map(show).collect();
            format!("({})", items.join(" "))
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

fn read(m: &Mutator, toks: &[String], pos: &mut usize) -> R {
    let t = toks.get(*pos).ok_or("unexpected end of input")?;
    *pos += 1;
    match t.as_str() {
        "(" => {
            let mut items = Vec::new();
            while toks.get(*pos).map(String::as_str) != Some(")") {
                if *pos >= toks.len() {
                    return Err("missing )".into());
                }
                items.push(read(m, toks, pos)?);
            }
            *pos += 1;
            Ok(items
                .into_iter()
                .rev()
                .fold(Value::Nil, |acc, v| cons(m, v, acc)))
        }
        ")" => Err("unexpected )".into()),
        "'" => {
            let q = read(m, toks, pos)?;
            Ok(cons(m, sym(m, "quote"), cons(m, q, Value::Nil)))
        }
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

fn eval(m: &Mutator, x: Value, env: Gc<Env>) -> R {
    m.safepoint();
    match x {
        Value::Sym(s) => lookup(env, &s.name),
        Value::Pair(p) => {
            let args = list_to_vec(p.cdr.get());
            if let Value::Sym(s) = p.car.get() {
                match s.name.as_str() {
                    "quote" => return Ok(args[0]),
                    "if" => {
                        let c = eval(m, args[0], env)?;
                        let branch = if truthy(c) { args.get(1) } else { args.get(2) };
                        return branch.map_or(Ok(Value::Nil), |b| eval(m, *b, env));
                    }
                    "define" => {
                        let (name, val) = match args[0] {
                            // (define (f args...) body)
                            Value::Pair(sig) => {
                                let Value::Sym(n) = sig.car.get() else {
                                    return Err("bad define".into());
                                };
                                let l = Gc::new(
                                    m,
                                    Lambda {
                                        params: sig.cdr.get(),
                                        body: rest(p.cdr.get()),
                                        env,
                                    },
                                );
                                (n, Value::Lambda(l))
                            }
                            Value::Sym(n) => (n, eval(m, args[1], env)?),
                            _ => return Err("bad define".into()),
                        };
                        define(m, env, name, val);
                        return Ok(Value::Nil);
                    }
                    "lambda" => {
                        return Ok(Value::Lambda(Gc::new(
                            m,
                            Lambda {
                                params: args[0],
                                body: rest(p.cdr.get()),
                                env,
                            },
                        )))
                    }
                    "set-cdr!" => {
                        let Value::Pair(target) = eval(m, args[0], env)? else {
                            return Err("set-cdr! of a non-pair".into());
                        };
                        target.cdr.set(m, eval(m, args[1], env)?);
                        return Ok(Value::Nil);
                    }
                    _ => {}
                }
            }
            let f = eval(m, p.car.get(), env)?;
            let vals = args
                .into_iter()
                .map(|a| eval(m, a, env))
                .collect::<Result<Vec<_>, _>>()?;
            apply(m, f, &vals)
        }
        v => Ok(v),
    }
}

fn apply(m: &Mutator, f: Value, args: &[Value]) -> R {
    match f {
        Value::Builtin(b) => b(m, args),
        Value::Lambda(l) => {
            let env = Gc::new(
                m,
                Env {
                    vars: RefLock::new(Vec::new()),
                    parent: Some(l.env),
                },
            );
            for (p, a) in list_to_vec(l.params).into_iter().zip(args) {
                let Value::Sym(s) = p else {
                    return Err("bad parameter".into());
                };
                define(m, env, s, *a);
            }
            let mut result = Value::Nil;
            for form in list_to_vec(l.body) {
                result = eval(m, form, env)?;
            }
            Ok(result)
        }
        _ => Err(format!("not a function: {}", show(f))),
    }
}

fn int(v: Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(i),
        _ => Err(format!("not a number: {}", show(v))),
    }
}

fn global_env(m: &Mutator) -> Gc<Env> {
    let env = Gc::new(
        m,
        Env {
            vars: RefLock::new(Vec::new()),
            parent: None,
        },
    );
    let builtins: [(&str, BuiltinFn); 10] = [
        ("+", |_, a| {
            Ok(Value::Int(
                a.iter().map(|v| int(*v)).sum::<Result<i64, _>>()?,
            ))
        }),
        ("-", |_, a| Ok(Value::Int(int(a[0])? - int(a[1])?))),
        ("*", |_, a| Ok(Value::Int(int(a[0])? * int(a[1])?))),
        ("<", |_, a| Ok(Value::Bool(int(a[0])? < int(a[1])?))),
        ("=", |_, a| Ok(Value::Bool(int(a[0])? == int(a[1])?))),
        ("cons", |m, a| Ok(cons(m, a[0], a[1]))),
        ("car", |_, a| match a[0] {
            Value::Pair(p) => Ok(p.car.get()),
            _ => Err("car of a non-pair".into()),
        }),
        ("cdr", |_, a| match a[0] {
            Value::Pair(p) => Ok(p.cdr.get()),
            _ => Err("cdr of a non-pair".into()),
        }),
        ("null?", |_, a| Ok(Value::Bool(matches!(a[0], Value::Nil)))),
        ("list", |m, a| {
            Ok(a.iter().rev().fold(Value::Nil, |acc, v| cons(m, *v, acc)))
        }),
    ];
    for (name, f) in builtins {
        let Value::Sym(s) = sym(m, name) else {
            unreachable!()
        };
        define(m, env, s, Value::Builtin(f));
    }
    env
}

const PROGRAM: &str = r#"
(define (fib n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))
(define (range a b) (if (< a b) (cons a (range (+ a 1) b)) '()))
(define (map f xs) (if (null? xs) '() (cons (f (car xs)) (map f (cdr xs)))))
(define (sum xs) (if (null? xs) 0 (+ (car xs) (sum (cdr xs)))))
(define (make-adder n) (lambda (x) (+ x n)))
((make-adder 40) 2)
(define (ring k) (define xs (range 0 k)) (set-cdr! (last xs) xs) k)
(define (last xs) (if (null? (cdr xs)) xs (last (cdr xs))))
(define (churn i acc) (if (= i 0) acc (churn (- i 1) (+ acc (sum (map (lambda (x) (* x x)) (range 0 50)))))))
(fib 20)
(sum (map (lambda (x) (* x x)) (range 0 100)))
(ring 1000)
(churn 2000 0)
"#;

fn main() {
    let src = match std::env::args().nth(1) {
        Some(f) => std::fs::read_to_string(f).expect("read program"),
        None => PROGRAM.to_string(),
    };
    let m = gc::attach();
    let env = global_env(&m);
    let toks = tokenize(&src);
    let mut pos = 0;
    while pos < toks.len() {
        let r = read(&m, &toks, &mut pos).and_then(|x| eval(&m, x, env));
        match r {
            Ok(Value::Nil) => {}
            Ok(v) => println!("{}", show(v)),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    let s = gc::stats();
    println!(
        ";; {} collections, {} objects freed, longest pause {} ms, heap goal {} KiB",
        s.cycles,
        s.objects_freed,
        gc::fmt_ms(s.pause_max),
        s.heap_goal >> 10
    );
}
