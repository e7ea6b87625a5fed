//! Link flags of `libgomalloc.so` (see README.md, "Linking").

fn main() {
    // Named explicitly: `-lc` goes through glibc's linker script, which also pulls `pthread_atfork` out of
    // libc_nonshared.a: libc.so.6 exports it only as a hidden compat symbol, so a library
    // that leaves it undefined fails to load ("undefined symbol: pthread_atfork").
    println!("cargo:rustc-link-lib=c");
    // Calls from inside the library to functions it defines itself (malloc, free, ...) bind
    // locally, so an executable that defines its own `free` cannot hijack them.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // Resolve every symbol at load time: no lazy PLT resolution inside the first malloc.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
    // A malloc can never be unloaded: pointers it handed out outlive any dlclose.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
