/*
** main.c: kbchat's entry point. Everything happens in cli_run(); this is the
** one place that calls exit().
*/
#include <locale.h>
#include <stdlib.h>

#include "app/cli.h"

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    exit(cli_run(argc, argv));
}
