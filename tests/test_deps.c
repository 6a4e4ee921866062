/*
** test_deps.c: scripts/deps.sh, which `make`, `make run` and `make test` call
** before building. Installs are never really run here: KBCHAT_DEPS_DRY_RUN=1
** makes the script print each command instead, and fake `pkg-config`, `id`
** and `sudo` programs on PATH stand for a machine without the libraries.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "tests/testutil.h"

#define PACKAGES "build-essential pkg-config libncurses-dev libpoppler-glib-dev libsqlite3-dev " \
                 "libopenblas-dev libyaml-dev libpcre2-dev libcmocka-dev tmux locales fonts-wqy-microhei qpdf"

typedef struct Fixture {
    char *dir;    /* holds the fake programs */
    char *script; /* absolute path of scripts/deps.sh */
    char path_env[4200];
} Fixture;

/* Writes an executable shell script `name` with body `body` into dir. */
static void write_program(const char *dir, const char *name, const char *body)
{
    char *p = testutil_join(dir, name);
    char text[512];
    snprintf(text, sizeof text, "#!/bin/sh\n%s\n", body);
    assert_int_equal(testutil_write_file(p, text, strlen(text)), 0);
    assert_int_equal(chmod(p, 0755), 0);
    free(p);
}

static int fixture_setup(void **state)
{
    Fixture *f = calloc(1, sizeof *f);
    f->dir = testutil_mkdtemp();
    f->script = realpath("scripts/deps.sh", NULL);
    const char *path = getenv("PATH");
    snprintf(f->path_env, sizeof f->path_env, "PATH=%s:%s", f->dir, path ? path : "/usr/bin:/bin");
    *state = f;
    return f->dir && f->script ? 0 : -1;
}

static int fixture_teardown(void **state)
{
    Fixture *f = *state;
    testutil_rmtree(f->dir);
    free(f->dir);
    free(f->script);
    free(f);
    return 0;
}

/* Runs deps.sh `action` with the fake programs first on PATH. */
static int run_deps(Fixture *f, const char *action, const char *pkg_config, char **out, char **err)
{
    char pc[600];
    snprintf(pc, sizeof pc, "PKG_CONFIG=%s", pkg_config);
    const char *argv[] = {"sh", f->script, action, NULL};
    const char *env[] = {f->path_env, pc, "KBCHAT_DEPS_DRY_RUN=1", NULL};
    int status;
    assert_int_equal(testutil_run(argv, env, NULL, 60, out, err, &status), 0);
    return status;
}

/* The build that is running these tests found every library. */
static void test_deps_check_passes_on_this_machine(void **state)
{
    char *out, *err;
    assert_int_equal(run_deps(*state, "check", "pkg-config", &out, &err), 0);
    free(out), free(err);
}

/* A prepared machine never touches apt: `ensure` does and prints nothing. */
static void test_deps_ensure_does_nothing_when_libraries_are_found(void **state)
{
    char *out, *err;
    assert_int_equal(run_deps(*state, "ensure", "pkg-config", &out, &err), 0);
    assert_string_equal(out, "");
    assert_string_equal(err, "");
    free(out), free(err);
}

/* Without pkg-config (a fresh machine), ensure installs everything with
** apt-get, saying exactly what it runs. As root there is no sudo. */
static void test_deps_ensure_installs_all_packages_when_pkg_config_is_missing(void **state)
{
    Fixture *f = *state;
    write_program(f->dir, "id", "echo 0");
    char *out, *err;
    assert_int_equal(run_deps(f, "ensure", "/nonexistent/pkg-config", &out, &err), 0);
    assert_non_null(strstr(out, "deps: not found: pkg-config"));
    assert_non_null(strstr(out, "deps: running: apt-get update\n"));
    assert_non_null(strstr(out, "apt-get install -y --no-install-recommends " PACKAGES "\n"));
    assert_null(strstr(out, "sudo"));
    free(out), free(err);
}

/* One missing library is enough to install; a normal user goes through sudo. */
static void test_deps_ensure_uses_sudo_when_not_root(void **state)
{
    Fixture *f = *state;
    write_program(f->dir, "id", "echo 1000");
    write_program(f->dir, "sudo", "exit 1");
    write_program(f->dir, "fake-pkg-config", "[ \"$2\" != cmocka ]");
    char *fake = testutil_join(f->dir, "fake-pkg-config");
    char *out, *err;
    assert_int_equal(run_deps(f, "ensure", fake, &out, &err), 0);
    assert_non_null(strstr(out, "deps: not found: cmocka"));
    assert_non_null(strstr(out, "deps: running: sudo apt-get update\n"));
    assert_non_null(strstr(out, "deps: running: sudo env DEBIAN_FRONTEND=noninteractive apt-get install"));
    free(out), free(err), free(fake);
}

static void test_deps_rejects_unknown_action(void **state)
{
    char *out, *err;
    assert_int_equal(run_deps(*state, "frob", "pkg-config", &out, &err), 2);
    assert_non_null(strstr(err, "usage:"));
    free(out), free(err);
}

#define FIXTURE(t) cmocka_unit_test_setup_teardown(t, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE(test_deps_check_passes_on_this_machine),
        FIXTURE(test_deps_ensure_does_nothing_when_libraries_are_found),
        FIXTURE(test_deps_ensure_installs_all_packages_when_pkg_config_is_missing),
        FIXTURE(test_deps_ensure_uses_sudo_when_not_root),
        FIXTURE(test_deps_rejects_unknown_action),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
