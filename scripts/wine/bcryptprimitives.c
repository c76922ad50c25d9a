/* bcryptprimitives.dll for Wine 8, which lacks it.
 *
 * The Rust standard library for x86_64-pc-windows-gnu takes its random seeds
 * (HashMap keys) from ProcessPrng in bcryptprimitives.dll. Wine 8.0 (Debian
 * 12) has no such DLL, so every Rust .exe would fail to load. This file
 * provides the one export, on top of RtlGenRandom (advapi32's
 * SystemFunction036), which Wine does have. It is for running our Windows
 * build under Wine only; real Windows ships the genuine DLL.
 *
 * Build:  x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 * Use:    put the DLL in the folder of the .exe that wine runs
 *         (scripts/test-windows.sh does this). */
#include <windows.h>

/* advapi32 exports RtlGenRandom under this name; the headers hide it. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Fill `data` with `len` random bytes. RtlGenRandom takes a 32-bit length,
 * so larger requests are served in pieces. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    const ULONG piece = 1u << 30;
    while (len > 0) {
        ULONG n = len > piece ? piece : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
