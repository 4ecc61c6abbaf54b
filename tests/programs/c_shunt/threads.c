/* pthread create/join, a mutex and condition variables under contention. */
#include <pthread.h>
#include <stdio.h>

#define THREADS 6
#define ITEMS 20000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;
static int queue[16], head, tail, count, done_producers;
static long consumed_sum, counter;

static void *producer(void *arg) {
    long base = (long)arg;
    for (int i = 0; i < ITEMS; i++) {
        pthread_mutex_lock(&lock);
        while (count == 16) pthread_cond_wait(&not_full, &lock);
        queue[tail] = (int)(base + i); tail = (tail + 1) % 16; count++;
        counter++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_lock(&lock);
    done_producers++;
    pthread_cond_broadcast(&not_empty);
    pthread_mutex_unlock(&lock);
    return 0;
}

static void *consumer(void *arg) {
    long got = 0;
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (count == 0 && done_producers < THREADS / 2) pthread_cond_wait(&not_empty, &lock);
        if (count == 0) { pthread_mutex_unlock(&lock); break; }
        int v = queue[head]; head = (head + 1) % 16; count--;
        consumed_sum += v; got++;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&lock);
    }
    return (void *)got;
}

int main(void) {
    pthread_t p[THREADS / 2], c[THREADS / 2];
    for (long i = 0; i < THREADS / 2; i++) pthread_create(&p[i], 0, producer, (void *)(i * 1000000));
    for (long i = 0; i < THREADS / 2; i++) pthread_create(&c[i], 0, consumer, 0);
    long total = 0;
    for (int i = 0; i < THREADS / 2; i++) pthread_join(p[i], 0);
    for (int i = 0; i < THREADS / 2; i++) { void *r; pthread_join(c[i], &r); total += (long)r; }
    printf("produced %ld consumed %ld sum %ld\n", counter, total, consumed_sum);
    return total == (long)ITEMS * (THREADS / 2) ? 0 : 1;
}
