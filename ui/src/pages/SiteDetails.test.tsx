import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { overview, tokyoDetails } from "../test/fixtures";
import { answer, fakeApi, renderInHost } from "../test/host";
import { KomojuPage } from "./KomojuPage";

const changes = { changes: [{ action: "komoju.payment_method.toggle", field: "enabled", site_id: "tokyo" }] };

const renderTokyo = async (routes: Record<string, unknown>, language = "en") => {
  const api = fakeApi({ "GET overview": overview(), "GET sites/tokyo": tokyoDetails(), ...routes });

  renderInHost(<KomojuPage />, { language });
  await screen.findByTestId("komoju-settings");

  return api;
};

const openTab = async (name: RegExp) => {
  const tab = screen.getByRole("tab", { name });

  fireEvent.click(tab);
  await waitFor(() => expect(tab.getAttribute("aria-selected")).toBe("true"));
};

/** Clicks a switch and waits until the component has taken the new state (zag updates it asynchronously). */
const flip = async (name: string | RegExp, container: HTMLElement = document.body) => {
  const input = within(container).getByRole("checkbox", { name }) as HTMLInputElement;
  const root = input.closest(".chakra-switch__root") as HTMLElement;
  const before = root.dataset.state;

  fireEvent.click(input);
  await waitFor(() => expect(root.dataset.state).not.toBe(before));
};

const methodRow = (key: string) =>
  screen.getByTestId("komoju-payment-methods").querySelector(`[data-method="${key}"]`) as HTMLElement;

describe("payment methods", () => {
  it("lists them by position, named in the user's language, a Shown switch in the method's state", async () => {
    await renderTokyo({}, "ja");
    await openTab(/決済手段/u);

    const rows = [...screen.getByTestId("komoju-payment-methods").querySelectorAll("tbody tr")];

    expect(rows.map((row) => row.getAttribute("data-method"))).toEqual([
      "konbini JPY",
      "credit_card JPY",
      "paypay JPY",
    ]);
    expect(within(rows[0] as HTMLElement).getByText("コンビニ")).toBeTruthy();
    expect(within(rows[0] as HTMLElement).getByText("seven-eleven, lawson")).toBeTruthy();
    const shown = screen.getAllByRole("checkbox", { name: /^表示: / }) as HTMLInputElement[];

    expect(shown.map((input) => input.checked)).toEqual([true, false, true]);
    expect(within(rows[2] as HTMLElement).getByText("いいえ")).toBeTruthy(); // paypay not available
  });

  it("a switch sends exactly {type_slug, currency, enabled} and reloads the site and the overview", async () => {
    const api = await renderTokyo({ "POST sites/tokyo/payment-methods/toggle": changes });

    await openTab(/Payment methods/u);
    fireEvent.click(within(methodRow("credit_card JPY")).getByRole("checkbox", { name: "Shown: credit_card JPY" }));

    await waitFor(() => expect(api.callsTo("GET", "sites/tokyo")).toHaveLength(2));
    const posts = api.calls.filter((call) => call.method === "POST");

    expect(posts).toEqual([
      {
        body: { currency: "JPY", enabled: true, type_slug: "credit_card" },
        credentials: "same-origin",
        method: "POST",
        path: "sites/tokyo/payment-methods/toggle",
        pathname: "/komoju/api/sites/tokyo/payment-methods/toggle",
      },
    ]);
    expect(Object.keys(posts[0]?.body as object)).toEqual(["type_slug", "currency", "enabled"]);
    expect(api.callsTo("GET", "overview")).toHaveLength(2);
  });

  it("move up sends position - 1, move down position + 1; the first cannot go up nor the last down", async () => {
    const api = await renderTokyo({ "POST sites/tokyo/payment-methods/move": changes });

    await openTab(/Payment methods/u);
    expect((screen.getByRole("button", { name: "Move up: konbini JPY" }) as HTMLButtonElement).disabled).toBe(true);
    expect((screen.getByRole("button", { name: "Move down: paypay JPY" }) as HTMLButtonElement).disabled).toBe(true);

    fireEvent.click(screen.getByRole("button", { name: "Move up: credit_card JPY" }));
    await waitFor(() => expect(api.callsTo("GET", "sites/tokyo")).toHaveLength(2));
    fireEvent.click(screen.getByRole("button", { name: "Move down: konbini JPY" }));
    await waitFor(() => expect(api.callsTo("GET", "sites/tokyo")).toHaveLength(3));

    expect(api.callsTo("POST", "sites/tokyo/payment-methods/move").map((call) => call.body)).toEqual([
      { currency: "JPY", position: 1, type_slug: "credit_card" },
      { currency: "JPY", position: 2, type_slug: "konbini" },
    ]);
  });

  it("shows the server's refusal as it is and does not reload", async () => {
    const api = await renderTokyo({
      "POST sites/tokyo/payment-methods/toggle": answer(403, {
        detail: "Your role may not edit the DAG komoju_update_payment_methods.",
        field: null,
      }),
    });

    await openTab(/Payment methods/u);
    fireEvent.click(screen.getByRole("checkbox", { name: "Shown: konbini JPY" }));

    expect((await screen.findByRole("alert")).textContent).toBe(
      "Your role may not edit the DAG komoju_update_payment_methods.",
    );
    expect(api.callsTo("GET", "sites/tokyo")).toHaveLength(1);
  });

  it("says so when the role may not read the payment-method job", async () => {
    await renderTokyo({ "GET sites/tokyo": tokyoDetails({ payment_methods: null }) });

    await openTab(/Payment methods/u);
    expect(screen.getByText(/may not read the payment-method update job/u)).toBeTruthy();
    expect(screen.queryByTestId("komoju-payment-methods")).toBeNull();
  });
});

describe("settings form", () => {
  const form = () => screen.getByTestId("komoju-settings");

  it("starts from the site's values and sends only the fields changed", async () => {
    const api = await renderTokyo({ "POST sites/tokyo": { changes: [{}, {}] } });
    const save = within(form()).getByRole("button", { name: "Save" }) as HTMLButtonElement;

    expect((within(form()).getByRole("textbox", { name: "Name" }) as HTMLInputElement).value).toBe("東京店");
    expect((within(form()).getByRole("textbox", { name: /Contacts/u }) as HTMLTextAreaElement).value).toBe(
      "ops@example.com\nshop@example.com",
    );
    expect((within(form()).getByRole("combobox", { name: "E-mail language" }) as HTMLSelectElement).value).toBe("ja");
    expect(save.disabled).toBe(true); // nothing changed yet

    fireEvent.change(within(form()).getByRole("textbox", { name: /Contacts/u }), {
      target: { value: " ops@example.com \n\nnew@example.com\n" },
    });
    await flip("E-mails on", form());
    expect(save.disabled).toBe(false);
    fireEvent.click(save);

    await waitFor(() => expect(api.callsTo("POST", "sites/tokyo")).toHaveLength(1));
    expect(api.callsTo("POST", "sites/tokyo")[0]?.body).toEqual({
      email_enabled: false,
      notify_emails: ["ops@example.com", "new@example.com"],
    });
    expect((await within(form()).findByRole("status")).textContent).toBe("Saved (2 changes).");
    await waitFor(() => expect(api.callsTo("GET", "sites/tokyo")).toHaveLength(2));
  });

  it("a name changed back to what it was is not sent", async () => {
    const api = await renderTokyo({ "POST sites/tokyo": { changes: [{}] } });
    const name = within(form()).getByRole("textbox", { name: "Name" });

    fireEvent.change(name, { target: { value: "Tokyo" } });
    fireEvent.change(name, { target: { value: "東京店" } });
    fireEvent.change(within(form()).getByRole("combobox", { name: "E-mail language" }), { target: { value: "en" } });
    fireEvent.click(within(form()).getByRole("button", { name: "Save" }));

    await waitFor(() => expect(api.callsTo("POST", "sites/tokyo")).toHaveLength(1));
    expect(api.callsTo("POST", "sites/tokyo")[0]?.body).toEqual({ email_locale: "en" });
  });

  it("shows a 422 next to the field it names, and nowhere else", async () => {
    const detail = "notify_emails: 'not-an-address' is not an e-mail address.";
    const api = await renderTokyo({ "POST sites/tokyo": answer(422, { detail, field: "notify_emails" }) });

    fireEvent.change(within(form()).getByRole("textbox", { name: /Contacts/u }), {
      target: { value: "not-an-address" },
    });
    fireEvent.click(within(form()).getByRole("button", { name: "Save" }));

    const contacts = within(form()).getByRole("textbox", { name: /Contacts/u });

    await waitFor(() => expect(contacts.getAttribute("aria-invalid")).toBe("true"));
    const field = contacts.closest(".chakra-field__root") as HTMLElement;

    expect(within(field).getByText(detail)).toBeTruthy();
    expect(within(form()).getByRole("textbox", { name: "Name" }).getAttribute("aria-invalid")).toBeNull();
    expect(screen.queryByRole("alert")).toBeNull(); // not also shown as a general error
    expect(api.callsTo("GET", "sites/tokyo")).toHaveLength(1); // a refused save does not reload
  });

  it("shows a refusal without a field above the button", async () => {
    await renderTokyo({
      "POST sites/tokyo": answer(403, { detail: "Your role may not edit the connection komoju_default.", field: null }),
    });

    await flip("Active", form());
    fireEvent.click(within(form()).getByRole("button", { name: "Save" }));

    expect((await within(form()).findByRole("alert")).textContent).toBe(
      "Your role may not edit the connection komoju_default.",
    );
  });
});

describe("orders and changes", () => {
  it("lists orders to settle with KOMOJU's reason under a translated header, amounts in one cell", async () => {
    await renderTokyo({}, "ja");
    await openTab(/手動対応/u);

    const table = screen.getByTestId("komoju-to-settle-table");
    const headers = [...table.querySelectorAll("th")].map((header) => header.textContent);

    expect(headers).toEqual(["処理", "注文番号", "状態", "金額", "KOMOJU からの理由", "記録日時", "メール送信日時"]);
    const row = table.querySelector('[data-order-no="1001"]') as HTMLElement;

    expect(within(row).getByText("HTTP 422 not_refundable: the payment is too old to be refunded")).toBeTruthy();
    expect(within(row).getByText("拒否")).toBeTruthy();
    const amount = within(row).getByText("1,500 JPY");

    expect(getComputedStyle(amount).whiteSpace).toBe("nowrap");
    expect(within(table.querySelector('[data-order-no="1004"]') as HTMLElement).getByText("未送信")).toBeTruthy();
  });

  it("lists pending orders with a link to the customer's page when there is one", async () => {
    await renderTokyo({});
    await openTab(/Pending/u);

    const table = screen.getByTestId("komoju-pending-table");
    const link = within(table.querySelector('[data-order-no="1002"]') as HTMLElement).getByRole("link", {
      name: "Open",
    });

    expect(link.getAttribute("href")).toBe("https://komoju.example/customer/1002");
    expect(link.getAttribute("target")).toBe("_blank");
    expect(within(table.querySelector('[data-order-no="1003"]') as HTMLElement).queryByRole("link")).toBeNull();
  });

  it("lists recent changes: who, when, through which door, what, before and after", async () => {
    await renderTokyo({});
    await openTab(/Recent changes/u);

    const rows = [...screen.getByTestId("komoju-changes").querySelectorAll("tbody tr")].map((row) =>
      [...row.querySelectorAll("td")].map((cell) => cell.textContent),
    );

    expect(rows).toEqual([
      [
        "2026-12-02 10:00",
        "admin",
        "this page",
        "Payment method · Shown",
        "credit_card JPY",
        "on → off",
      ],
      ["2026-12-01 10:00", "ops", "CLI", "Site settings · E-mail language", "", "English → Japanese"],
    ]);
  });
});
