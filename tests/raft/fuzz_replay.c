/*
 * fuzz_replay.c - runs a libFuzzer harness over every file of a corpus directory, without
 * libFuzzer, so the normal test run (and the ASan one) replays the stored corpus.
 * Usage: fuzz_replay DIR
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 64;
    }
    DIR *dir = opendir(argv[1]);
    if (!dir) {
        perror(argv[1]);
        return 1;
    }
    size_t files = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) {
            perror(path);
            closedir(dir);
            return 1;
        }
        uint8_t *buf = malloc(1 << 20);
        if (!buf) {
            fclose(f);
            closedir(dir);
            return 1;
        }
        size_t n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
        files++;
    }
    closedir(dir);
    printf("replayed %zu inputs from %s\n", files, argv[1]);
    return files > 0 ? 0 : 1;
}
