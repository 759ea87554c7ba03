import { cleanup } from "@testing-library/react";
import { afterEach, beforeEach } from "vitest";

beforeEach(() => {
  localStorage.clear();
  document.documentElement.className = "";
  document.documentElement.lang = "en";
});

afterEach(cleanup);
