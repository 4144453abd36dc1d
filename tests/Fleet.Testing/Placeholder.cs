namespace Fleet.Testing; public static class Placeholder { }
