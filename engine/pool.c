/*
** pool.c: a fixed set of worker threads that run one function at a time.
**
** A generation step calls pool_run a few hundred times (every matrix product
** and attention of every layer), so handing out work must be cheap: workers
** spin briefly on a generation counter before falling back to sleeping on a
** condition variable, and the caller's thread does its own share instead of
** waiting idle.
*/
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "engine/pool.h"

#define POOL_SPIN 20000 /* polls before a worker sleeps */

struct Pool {
    int n;                   /* workers including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint generation;  /* bumped for every pool_run */
    atomic_int pending;      /* workers still running the current job */
    atomic_bool stop;
    PoolFn fn;
    void *arg;
};

typedef struct Worker {
    Pool *p;
    int ith;
} Worker;

/* Waits until the generation moves past `seen`; returns the new one. */
static unsigned wait_for_job(Pool *p, unsigned seen)
{
    for (int i = 0; i < POOL_SPIN; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || atomic_load(&p->stop)) return g;
        if ((i & 63) == 63) sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    unsigned g;
    while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg)
{
    Worker w = *(Worker *)arg;
    free(arg);
    Pool *p = w.p;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->stop)) break;
        p->fn(p->arg, w.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
    return NULL;
}

int pool_new(int n_threads, Pool **out)
{
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    Pool *p = calloc(1, sizeof *p);
    if (p == NULL) return KB_ENOMEM;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (p->threads == NULL) {
        pool_free(p);
        return KB_ENOMEM;
    }
    for (int i = 1; i < n_threads; i++) {
        Worker *w = malloc(sizeof *w);
        if (w) *w = (Worker){p, i};
        if (w == NULL || pthread_create(&p->threads[i], NULL, worker_main, w) != 0) {
            int rc = w ? KB_EIO : KB_ENOMEM;
            free(w);
            p->n = i; /* only the started ones are joined */
            pool_free(p);
            return rc;
        }
    }
    *out = p;
    return KB_OK;
}

void pool_free(Pool *p)
{
    if (p == NULL) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n && p->threads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int pool_size(const Pool *p)
{
    return p->n;
}

void pool_run(Pool *p, PoolFn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (unsigned i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++)
        if ((i & 1023) == 0) sched_yield(); /* more threads than cores: let them run */
}
