/*
** test_deps.c: scripts/deps.sh and the package list scripts/packages, which
** `make` (build level) and `make test` (test level) read before building.
** Installs are never really run here: KBCHAT_DEPS_DRY_RUN=1 makes the script
** print each command instead, and fake `pkg-config`, `id` and `sudo` programs
** on PATH stand for a machine without the libraries. The expected package
** lists are read from scripts/packages by this file's own small parser.
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

/* Returns the Debian packages scripts/packages lists for `level` ("build";
** "test" means build and test), space-separated, in file order. */
static char *listed_packages(const char *level)
{
    char *text = testutil_read_file("scripts/packages", NULL);
    assert_non_null(text);
    char *out = calloc(1, strlen(text) + 1), *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char when[16], package[128];
        if (line[0] == '#' || sscanf(line, "%15s %127s", when, package) != 2) continue;
        assert_true(strcmp(when, "build") == 0 || strcmp(when, "test") == 0);
        if (strcmp(when, level) != 0 && strcmp(level, "test") != 0) continue;
        if (out[0]) strcat(out, " ");
        strcat(out, package);
    }
    free(text);
    return out;
}

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
/* Runs deps.sh `action` `level` (NULL: none) with the fake programs first on
** PATH and pkg_config as PKG_CONFIG; list (NULL: scripts/packages) is the
** package list. Returns the exit status. */
static int run_deps(Fixture *f, const char *action, const char *level, const char *pkg_config, const char *list,
                    char **out, char **err)
{
    char pc[600], packages[600];
    snprintf(pc, sizeof pc, "PKG_CONFIG=%s", pkg_config);
    snprintf(packages, sizeof packages, "KBCHAT_PACKAGES=%s", list ? list : "scripts/packages");
    const char *argv[] = {"sh", f->script, action, level, NULL};
    const char *env[] = {f->path_env, pc, packages, "KBCHAT_DEPS_DRY_RUN=1", NULL};
    int status;
    assert_int_equal(testutil_run(argv, env, NULL, 60, out, err, &status), 0);
    return status;
}

/* A fake pkg-config on f's PATH that knows every library except `absent`
** (NULL: none); returns its path. */
static char *fake_pkg_config(Fixture *f, const char *absent)
{
    char body[200];
    snprintf(body, sizeof body, "[ \"$1\" = --exists ] && [ \"$2\" != \"%s\" ]", absent ? absent : "");
    write_program(f->dir, "fake-pkg-config", body);
    return testutil_join(f->dir, "fake-pkg-config");
}

/* A list whose build library the fake pkg-config knows and whose test tools
** are certainly absent: the build level is complete, the test level not. */
static char *list_missing_test_tools(Fixture *f)
{
    static const char list[] = "# a test list\n"
                               "build  libfoo-dev    pc:foo\n"
                               "\n"
                               "test   footool       cmd:kbchat-test-no-such-tool\n"
                               "test   foo-fixtures  file:/nonexistent/kbchat-fixture\n";
    char *p = testutil_join(f->dir, "packages");
    assert_int_equal(testutil_write_file(p, list, strlen(list)), 0);
    return p;
}

/* A machine with the build libraries never touches apt for `make`, even
** without any test tool: ensure build does and prints nothing. */
static void test_deps_build_level_ignores_missing_test_tools(void **state)
{
    Fixture *f = *state;
    char *pc = fake_pkg_config(f, NULL), *list = list_missing_test_tools(f), *out, *err;
    assert_int_equal(run_deps(f, "ensure", "build", pc, list, &out, &err), 0);
    assert_string_equal(out, "");
    assert_string_equal(err, "");
    free(out), free(err);
    assert_int_equal(run_deps(f, "check", NULL, pc, list, &out, &err), 0);
    free(out), free(err), free(pc), free(list);
}

/* `make test` (ensure test) installs the missing test tools, with the build
** packages in the same apt-get line. */
static void test_deps_test_level_installs_missing_test_tools(void **state)
{
    Fixture *f = *state;
    write_program(f->dir, "id", "echo 0");
    char *pc = fake_pkg_config(f, NULL), *list = list_missing_test_tools(f), *out, *err;
    assert_int_equal(run_deps(f, "check", "test", pc, list, &out, &err), 1);
    free(out), free(err);
    assert_int_equal(run_deps(f, "ensure", "test", pc, list, &out, &err), 0);
    assert_non_null(strstr(out, "deps: not found: footool foo-fixtures \n"));
    assert_non_null(strstr(out, "apt-get install -y --no-install-recommends libfoo-dev footool foo-fixtures\n"));
    free(out), free(err), free(pc), free(list);
}

/* Without pkg-config's libraries (a fresh machine), ensure installs every
** build package of scripts/packages with apt-get, saying exactly what it runs;
** as root there is no sudo. The test level adds every test package. */
static void test_deps_installs_every_listed_package(void **state)
{
    Fixture *f = *state;
    write_program(f->dir, "id", "echo 0");
    static const char *const levels[] = {"build", "test"};
    for (int i = 0; i < 2; i++) {
        char *want = listed_packages(levels[i]), line[2048], *out, *err;
        assert_non_null(strstr(want, "libsqlite3-dev"));
        assert_int_equal(run_deps(f, "ensure", levels[i], "/nonexistent/pkg-config", NULL, &out, &err), 0);
        assert_non_null(strstr(out, "deps: not found: "));
        assert_non_null(strstr(out, "deps: running: apt-get update\n"));
        snprintf(line, sizeof line, "apt-get install -y --no-install-recommends %s\n", want);
        assert_non_null(strstr(out, line));
        assert_null(strstr(out, "sudo"));
        assert_int_equal(strstr(want, "libcmocka-dev") != NULL, i == 1); /* cmocka is a test package */
        free(out), free(err), free(want);
    }
}

/* One missing library is enough to install; a normal user goes through sudo. */
static void test_deps_ensure_uses_sudo_when_not_root(void **state)
{
    Fixture *f = *state;
    write_program(f->dir, "id", "echo 1000");
    write_program(f->dir, "sudo", "exit 1");
    char *pc = fake_pkg_config(f, "sqlite3"), *out, *err;
    assert_int_equal(run_deps(f, "ensure", "build", pc, NULL, &out, &err), 0);
    assert_non_null(strstr(out, "deps: not found: libsqlite3-dev"));
    assert_non_null(strstr(out, "deps: running: sudo apt-get update\n"));
    assert_non_null(strstr(out, "deps: running: sudo env DEBIAN_FRONTEND=noninteractive apt-get install"));
    free(out), free(err), free(pc);
}

/* The Makefile's library lists: the pc: names of exactly one level each. */
static void test_deps_libs_lists_one_level(void **state)
{
    char *out, *err;
    assert_int_equal(run_deps(*state, "libs", "build", "pkg-config", NULL, &out, &err), 0);
    assert_non_null(strstr(out, "sqlite3"));
    assert_null(strstr(out, "cmocka"));
    free(out), free(err);
    assert_int_equal(run_deps(*state, "libs", "test", "pkg-config", NULL, &out, &err), 0);
    assert_non_null(strstr(out, "cmocka"));
    assert_null(strstr(out, "sqlite3"));
    free(out), free(err);
}

static void test_deps_rejects_unknown_action_and_level(void **state)
{
    char *out, *err;
    assert_int_equal(run_deps(*state, "frob", NULL, "pkg-config", NULL, &out, &err), 2);
    assert_non_null(strstr(err, "usage:"));
    free(out), free(err);
    assert_int_equal(run_deps(*state, "check", "everything", "pkg-config", NULL, &out, &err), 2);
    assert_non_null(strstr(err, "usage:"));
    free(out), free(err);
}

#define FIXTURE(t) cmocka_unit_test_setup_teardown(t, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FIXTURE(test_deps_build_level_ignores_missing_test_tools),
        FIXTURE(test_deps_test_level_installs_missing_test_tools),
        FIXTURE(test_deps_installs_every_listed_package),
        FIXTURE(test_deps_ensure_uses_sudo_when_not_root),
        FIXTURE(test_deps_libs_lists_one_level),
        FIXTURE(test_deps_rejects_unknown_action_and_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
