//! Charts of the month overview, drawn as SVG on the server by plotters: nothing to load, no
//! script, and the numbers stay in the table beside each chart for those who read rather than
//! look.

use plotters::prelude::*;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 240;

/// A bar per `(name, count)`, named on the x axis; empty when there is nothing to draw.
pub fn bars(title: &str, values: &[(String, i64)]) -> String {
    if values.is_empty() {
        return String::new();
    }
    let mut svg = String::new();
    if let Err(error) = draw_bars(&mut svg, values) {
        tracing::warn!(%error, chart = title, "chart not drawn");
        return String::new();
    }
    // Named for screen readers; the table beside it holds the same figures.
    let title = askama::filters::escape(title, askama::filters::Html).map(|t| t.to_string()).unwrap_or_default();
    svg.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{title}\" "), 1)
}

fn draw_bars<'a>(svg: &'a mut String, values: &[(String, i64)]) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = values.len() as i32;
    let top = values.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let top = top + top / 10 + 1;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0i64..top)?;
    let names: Vec<&str> = values.iter().map(|(name, _)| name.as_str()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(values.len())
        .x_label_formatter(&|value| match value {
            SegmentValue::CenterOf(i) => names.get(*i as usize).map_or_else(String::new, |n| n.to_string()),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(RGBColor(0x12, 0x35, 0x5b).filled())
            .margin(8)
            .data(values.iter().enumerate().map(|(i, (_, v))| (i as i32, *v))),
    )?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_titles_are_escaped_in_the_svg() {
        let svg = bars("flags <b>", &[("<script>x</script>".to_string(), 3), ("ok".to_string(), 1)]);
        assert!(svg.starts_with("<svg role=\"img\" aria-label=\"flags &#60;b&#62;\""), "{svg}");
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert_eq!(bars("empty", &[]), "");
    }
}
