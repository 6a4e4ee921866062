/*
** main.c: kbchat's entry point. Everything happens in cli_run(); this is the
** one place that calls exit(), and the one place where app/ meets ui/: it
** hands cli_run the full-screen chat, so that app/ never names ui/.
*/
#include <locale.h>
#include <stdlib.h>

#include "app/cli.h"
#include "ui/ui.h"

int main(int argc, char **argv)
{
    static const CliFullScreen full_screen = {
        .run = ui_run,
        .quit_signal = ui_quit_signal,
        .library_version = ui_library_version,
    };
    setlocale(LC_ALL, "");
    exit(cli_run(argc, argv, &full_screen));
}
